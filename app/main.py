"""Entry point of the desktop app."""

from __future__ import annotations


def run_gui(home: str | None = None, port: int | None = None) -> int:
    from app.application import run

    return run(home=home, port=port)
