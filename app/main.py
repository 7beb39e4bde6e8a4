"""The `voka-bridge` console script: the server's command line, with the desktop app plugged in for
`voka-bridge` / `voka-bridge gui` (server/ never imports app/; the app hands itself to the server's CLI)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from server.cli import main as server_main


def run_gui(home: str | None = None, port: int | None = None) -> int:
    from app.application import run  # Qt is imported only when the window is really wanted

    return run(home=home, port=port)


def main(argv: Sequence[str] | None = None) -> int:
    return server_main(argv, gui=run_gui)


if __name__ == "__main__":
    sys.exit(main())
