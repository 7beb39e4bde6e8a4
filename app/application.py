"""`voka-bridge gui`: one QApplication, one instance per user, the server started at once."""

from __future__ import annotations

import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.icons import app_icon
from app.single_instance import SingleInstance, instance_name
from server.paths import resolve_paths


def run(home: str | None = None, port: int | None = None) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Voka Bridge")
    app.setOrganizationName("Voka")
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # closing the window keeps the tray app serving
    single = SingleInstance(instance_name(resolve_paths(home)))
    if not single.claim():
        print("Voka Bridge is already running; its window was brought forward.", file=sys.stderr)
        return 0

    from app.desktop import DesktopApp

    desktop = DesktopApp(home, port)
    single.activated.connect(desktop.show_window)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: QTimer.singleShot(0, desktop.quit))
    wakeup = QTimer()  # lets Python run its signal handlers while Qt's loop waits
    wakeup.start(250)
    wakeup.timeout.connect(lambda: None)
    desktop.show_window()
    desktop.start()
    if desktop.server.first_run:
        desktop.open_wizard()
    try:
        return app.exec()
    finally:
        if not desktop.quitting:
            desktop.shutdown()
        single.release()
