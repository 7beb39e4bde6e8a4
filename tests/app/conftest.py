"""Fixtures for the desktop app: the real app (embedded server on a free port) in a temp home."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.autostart import XdgAutostart
from server.paths import Paths
from tests.conftest import demo_home, free_port


@pytest.fixture
def app_home(tmp_path: Path, demo_template: Path) -> Paths:
    """A home as a first run leaves it: demo database and default catalog, no config.toml yet."""
    return demo_home(tmp_path / "apphome", demo_template)


def write_config(paths: Paths, text: str) -> None:
    paths.config_file.write_text(text, encoding="utf-8")


@pytest.fixture
def make_desktop(qtbot: Any, app_home: Paths, tmp_path: Path) -> Iterator[Any]:
    """Build (and always tear down) DesktopApp instances; the server started and serving."""
    from app.desktop import DesktopApp

    made: list[DesktopApp] = []

    def factory(*, start: bool = True, port: int | None = None, tray: bool | None = True,
                home: Paths = app_home, **options: Any) -> DesktopApp:
        app = DesktopApp(str(home.config_dir), port or free_port(),
                         autostart=XdgAutostart(tmp_path / "xdg"), tray=tray, **options)
        made.append(app)
        qtbot.addWidget(app.window)
        if start:
            app.start()
            qtbot.waitUntil(lambda: app.server.state in ("serving", "failed"), timeout=20_000)
            assert app.server.state == "serving", app.server.last_failure
        return app

    yield factory
    for app in made:
        app.shutdown()
    assert not [t for t in threading.enumerate() if t.name == "voka-server" and t.is_alive()]


@pytest.fixture
def desktop(make_desktop: Any) -> Any:
    return make_desktop()


def call(url: str, path: str, body: Any = None, *, key: str | None = None, method: str = "POST",
         raw: bytes | None = None) -> tuple[int, Any]:
    """One request from outside the app, with aiohttp, as Voka would send it."""
    async def go() -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["x-api-key"] = key
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        async with aiohttp.ClientSession() as session, session.request(
                method, url + path, data=data, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    return asyncio.run(go())
