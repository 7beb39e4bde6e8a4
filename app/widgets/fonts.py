"""Fonts: the system's fixed-width font for SQL and JSON."""

from __future__ import annotations

from PySide6.QtGui import QFont, QFontDatabase


def mono() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
