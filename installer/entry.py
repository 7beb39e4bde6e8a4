"""Frozen entry point: the same `voka-bridge` command line (no arguments opens the tray app)."""

import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
