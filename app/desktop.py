"""The whole desktop app assembled: embedded server, controller, window, tray. Tests build this too."""

from __future__ import annotations

import logging
import sys

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from app.controller import AppController
from app.pages.connect import ConnectPage
from app.pages.console import ConsolePage
from app.pages.database import DatabasePage
from app.pages.keys import KeysPage
from app.pages.overview import OverviewPage
from app.pages.requests import RequestsPage
from app.pages.settings import SettingsPage
from app.pages.tools import ToolsPage
from app.tray import Tray
from app.window import CloseChoice, MainWindow
from app.wizard import ConnectWizard
from server.autostart import Autostart, for_platform
from server.embedded import EmbeddedServer
from server.notices import NoticeRules

log = logging.getLogger(__name__)


GIL_SLICE_SECONDS = 0.001
STOP_QUESTION = ("Closing the window stops Voka Bridge: Voka will not reach your shop until you start it "
                 "again. Stop it?")


class DesktopApp(QObject):
    def __init__(self, home: str | None = None, port: int | None = None, *,
                 autostart: Autostart | None = None, tray: bool | None = None,
                 requests_cap: int = 5000) -> None:
        super().__init__()
        # The server thread shares the GIL with the window; under a burst it would keep it for the
        # default 5 ms slices, and a window that needs it many times per frame stalls. Shorter slices
        # hand it back sooner (the server's throughput barely changes).
        sys.setswitchinterval(GIL_SLICE_SECONDS)
        self.requests_cap = requests_cap
        self.server = EmbeddedServer(home, port)
        self.controller = AppController(self.server, self)
        self.quitting = False
        self._told_about_tray = False
        self.tray = Tray(self.controller, autostart or for_platform(), open_dashboard=self.show_window,
                         quit_app=self.quit, parent=self)
        if tray is not None:
            self.tray.available = tray
        self.pages = self._build_pages()
        self.window = MainWindow(self.controller, self.pages, on_close=self._on_window_close)
        self.wizard: ConnectWizard | None = None
        self.close_question: QMessageBox | None = None

    def _build_pages(self) -> list[QWidget]:
        return [OverviewPage(self.controller), RequestsPage(self.controller, self.requests_cap),
                ConsolePage(self.controller), ToolsPage(self.controller), KeysPage(self.controller),
                DatabasePage(self.controller), SettingsPage(self.controller, self.tray.autostart),
                ConnectPage(self.controller, self.open_wizard)]

    def page(self, title: str) -> QWidget:
        return self.window.pages[title]

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.controller.start()

    @Slot()
    def open_wizard(self) -> ConnectWizard:
        """The Connect-to-Voka wizard (first run, and from the Connect page)."""
        if self.wizard is None or not self.wizard.isVisible():
            self.wizard = ConnectWizard(self.controller, self.window)
        self.wizard.open()
        self.wizard.raise_()
        return self.wizard

    @Slot()
    def show_window(self) -> None:
        self.window.bring_forward()

    def _on_window_close(self) -> CloseChoice:
        """Closing the window keeps serving from the tray. Without a tray the window is the whole app, so
        closing it would stop serving Voka: ask first, and keep running (minimized) unless told to stop."""
        if self.quitting:
            return "close"
        if self.tray.available:
            if not self._told_about_tray:
                self._told_about_tray = True
                self.controller.notify(NoticeRules.kept_in_tray())
            return "hide"
        if self.ask_to_stop():
            self.quit()
            return "close"
        return "minimize"

    def ask_to_stop(self) -> bool:
        """The owner's answer to closing the window with no tray: True to stop Voka Bridge."""
        box = QMessageBox(QMessageBox.Icon.Question, "Stop Voka Bridge?", STOP_QUESTION, parent=self.window)
        stop = box.addButton("Stop Voka Bridge", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep running (minimize)", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        self.close_question = box
        try:
            box.exec()
            return box.clickedButton() is stop
        finally:
            self.close_question = None

    @Slot()
    def quit(self) -> None:
        """Stop the server cleanly, hide the tray icon, close the window, leave the event loop."""
        if self.quitting:
            return
        self.quitting = True
        self.shutdown()
        app = QApplication.instance()
        if app is not None:
            app.quit()

    def shutdown(self) -> None:
        self.quitting = True
        if self.wizard is not None:
            self.wizard.close()
        self.tray.hide()
        for page in self.pages:
            stop = getattr(page, "stop", None)
            if stop is not None:
                stop()
        self.controller.shutdown()
        self.window.close()
