"""The `voka-bridge` console script: the server's command line, with the desktop app plugged in for
`voka-bridge` / `voka-bridge gui` (server/ never imports app/; the app hands itself to the server's CLI)."""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Sequence

from server.cli import main as server_main


def display_problem() -> str | None:
    """Why the window cannot open here (Linux without a display, or without the library Qt's X11 plugin
    needs), in one line that points to what works instead; None when it can. Qt itself would abort."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("voka-bridge: there is no display here (DISPLAY is not set), so the desktop app cannot open. "
                "To run the server without a window: voka-bridge serve  (see voka-bridge serve --help)")
    x11_only = os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    if x11_only and not getattr(sys, "frozen", False) and ctypes.util.find_library("xcb-cursor") is None:
        return ("voka-bridge: the desktop app needs the system library libxcb-cursor0 (Debian/Ubuntu: "
                "sudo apt install libxcb-cursor0). Or run the server without a window: voka-bridge serve")
    return None


def run_gui(home: str | None = None, port: int | None = None) -> int:
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from app.application import run  # Qt is imported only when the window is really wanted

    return run(home=home, port=port)


def main(argv: Sequence[str] | None = None) -> int:
    return server_main(argv, gui=run_gui)


if __name__ == "__main__":
    sys.exit(main())
