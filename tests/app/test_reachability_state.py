"""Tray/Overview say "degraded" with a plain reason when the public address does not lead to this PC."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from tests.app.conftest import write_config
from tests.conftest import free_port


class LocalTunnel:
    """A real reverse proxy on its own port and thread: a stand-in for cloudflared coming back up."""

    def __init__(self, port: int, target: str) -> None:
        self.port, self.target = port, target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="local-tunnel", daemon=True)
        self.runner: web.AppRunner | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session, session.get(self.target + request.path) as answer:
            return web.Response(status=answer.status, body=await answer.read(),
                                content_type=answer.content_type)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def tunnels() -> Iterator[list[LocalTunnel]]:
    made: list[LocalTunnel] = []
    yield made
    for tunnel in made:
        tunnel.stop()


def test_public_url_that_answers_keeps_serving(make_desktop, app_home, qtbot):
    port = free_port()
    write_config(app_home, f'[server]\npublic_url = "http://127.0.0.1:{port}"\n')
    app = make_desktop(port=port)
    qtbot.waitUntil(lambda: app.server.bridge.reachability is not None
                    and app.server.bridge.reachability.last is not None, timeout=10_000)
    assert app.server.bridge.reachability.last.reachable
    qtbot.waitUntil(lambda: app.tray.state == "serving", timeout=5000)
    assert app.controller.status.state == "serving"


def test_public_url_down_is_degraded_with_the_reason_and_recovers(make_desktop, app_home, qtbot, tunnels):
    public_port = free_port()
    public = f"http://127.0.0.1:{public_port}"
    write_config(app_home, f'[server]\npublic_url = "{public}"\n')
    app = make_desktop()
    qtbot.waitUntil(lambda: app.tray.state == "degraded", timeout=10_000)
    reason = f"Voka cannot reach this PC: {public} does not answer."
    assert app.controller.status.reason == reason
    page = app.window.show_page("Overview")
    app.window.show()
    page.refresh()
    assert "Degraded" in page.state_label.text() and page.reason_label.text() == reason
    assert reason in app.tray.tooltip()

    tunnel = LocalTunnel(public_port, app.controller.local_url)
    tunnel.start()
    tunnels.append(tunnel)
    app.controller.check_reachability()  # on demand: no 30 s wait
    qtbot.waitUntil(lambda: app.tray.state == "serving", timeout=10_000)
    assert app.controller.status.reason == "Serving; the database answers."
    page.refresh()
    assert "Serving" in page.state_label.text()
