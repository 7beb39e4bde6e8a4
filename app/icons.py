"""Icons from resources/icons (SVG, so they stay sharp on HiDPI screens)."""

from __future__ import annotations

from functools import cache

from PySide6.QtGui import QIcon

import resources

STATE_COLOURS = {"serving": "#2e9d4f", "degraded": "#e0a100", "stopped": "#8a8f98", "failed": "#d33a2c",
                 "starting": "#3d7be0"}


def icon_path(name: str) -> str:
    return str(resources.path("icons", f"{name}.svg"))


@cache
def icon(name: str) -> QIcon:
    """The SVG icon engine renders at whatever size and device pixel ratio is asked for."""
    return QIcon(icon_path(name))


def app_icon() -> QIcon:
    return icon("voka-bridge")


def state_icon(state: str) -> QIcon:
    return icon(f"tray-{state}")


def page_icon(page: str) -> QIcon:
    return icon(f"page-{page}")
