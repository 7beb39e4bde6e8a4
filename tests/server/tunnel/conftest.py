"""Stand-ins for the tunnels at the process boundary (no tunnel reaches the internet here), and quick
timings so that restarts with back-off take a fraction of a second."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server import tunnel
from server.bridge import Bridge
from server.config import Config
from server.events import TunnelChanged
from server.host import ServerHost
from server.paths import Paths
from server.tunnel.cloudflared import Cloudflared, CloudflareNamed, CloudflareQuick
from server.tunnel.manager import TunnelManager
from server.tunnel.provider import Health, Progress, Tunnel, TunnelSpec
from server.tunnel.supervisor import Supervisor
from tests.conftest import RunningServer
from tests.server.tunnel.relay import ngrok_headers, relay_app, serve

FAKE_CLOUDFLARED = Path(__file__).with_name("fake_cloudflared.py")
NGROK_CLIENT = "203.0.113.7"


@pytest.fixture(autouse=True)
def quick_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Supervisor, "first_delay", 0.05)
    monkeypatch.setattr(Supervisor, "max_delay", 0.4)
    monkeypatch.setattr(Supervisor, "stable_after", 2.0)
    monkeypatch.setattr(Supervisor, "open_timeout", 20.0)
    monkeypatch.setattr(Cloudflared, "poll_interval", 0.05)
    monkeypatch.setattr(Cloudflared, "watch_interval", 0.1)
    monkeypatch.setattr(Cloudflared, "open_timeout", 15.0)
    monkeypatch.setattr(TunnelManager, "watch_interval", 0.1)


class FakeCloudflared:
    """Drives tests/server/tunnel/fake_cloudflared.py through its state folder."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.command = [sys.executable, str(FAKE_CLOUDFLARED)]

    def runs(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.state.glob("run-*.json"))]

    def die(self) -> None:
        (self.state / "die").write_text("now")

    def unready(self, on: bool) -> None:
        path = self.state / "unready"
        if on:
            path.write_text("edge gone")
        else:
            path.unlink(missing_ok=True)

    def edge(self, run: int = -1) -> str:
        """The fake edge's address for the run (what the public name leads to, on this PC)."""
        return f"http://127.0.0.1:{self.runs()[run]['public_port']}"


@pytest.fixture
def fake_cloudflared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCloudflared:
    """The fake program as what runs cloudflared for both Cloudflare providers."""
    state = tmp_path / "fake-cloudflared"
    state.mkdir()
    monkeypatch.setenv("FAKE_CLOUDFLARED_DIR", str(state))
    fake = FakeCloudflared(state)
    monkeypatch.setitem(tunnel.PROVIDERS, "cloudflare-quick",
                        functools.partial(CloudflareQuick, executable=fake.command))
    monkeypatch.setitem(tunnel.PROVIDERS, "cloudflare-named",
                        functools.partial(CloudflareNamed, executable=fake.command))
    return fake


@pytest.fixture
def fake_cloudflared_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCloudflared:
    """The fake program installed as `cloudflared` first on PATH (the real providers find it there)."""
    if sys.platform == "win32":
        pytest.skip("the PATH stand-in is a POSIX shell script")
    state = tmp_path / "fake-cloudflared"
    state.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "cloudflared"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLOUDFLARED}" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_CLOUDFLARED_DIR", str(state))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return FakeCloudflared(state)


class StandInNgrok(Tunnel):
    """The ngrok provider's interface with a local edge: an HTTP relay that forwards to the tunnel's
    target adding X-Forwarded-For as ngrok does (the caller's own value, then the real address)."""

    instances: list[StandInNgrok] = []

    def __init__(self, spec: TunnelSpec) -> None:
        self.spec = spec
        self.runner: web.AppRunner | None = None
        self.lost = asyncio.Event()
        StandInNgrok.instances.append(self)

    async def open(self, progress: Progress) -> str:
        progress("Connecting to ngrok…", None)
        self.runner, port = await serve(relay_app(self.spec.target, ngrok_headers, NGROK_CLIENT))
        return f"http://127.0.0.1:{port}"

    async def wait(self, health: Health) -> str:
        await self.lost.wait()
        return "The stand-in ngrok session was lost."

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
def stand_in_ngrok(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[StandInNgrok]]:
    StandInNgrok.instances = []
    monkeypatch.setitem(tunnel.PROVIDERS, "ngrok", StandInNgrok)
    yield StandInNgrok


class Recorder:
    """Every TunnelChanged on a bus, and a way to wait for one."""

    def __init__(self) -> None:
        self.events: list[TunnelChanged] = []
        self._changed = asyncio.Event()

    def __call__(self, event: object) -> None:
        if isinstance(event, TunnelChanged):
            self.events.append(event)
            self._changed.set()

    def states(self) -> list[str]:
        return [e.state for e in self.events]

    async def wait_for(self, match: Callable[[TunnelChanged], bool], timeout: float = 20.0,
                       after: int = 0) -> TunnelChanged:
        """The first event from index `after` on that matches."""
        async def find() -> TunnelChanged:
            while True:
                for event in self.events[after:]:
                    if match(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no matching tunnel event in {timeout} s; seen: {self.events}") from None


async def until(check: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Poll `check` until it returns something true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def make_tunnelled(home: Paths) -> AsyncIterator[Callable[..., Awaitable[tuple[RunningServer, Recorder]]]]:
    """Start demo servers on free ports with a [tunnel] config, recording tunnel events from the start.
    The probe of the public address is off unless asked for (a stand-in's names lead nowhere)."""
    started: list[RunningServer] = []

    async def factory(tunnel_config: dict[str, Any], server: dict[str, Any] | None = None
                      ) -> tuple[RunningServer, Recorder]:
        cfg = Config.model_validate({"server": {"port": 0, "check_public_url": False, **(server or {})},
                                     "tunnel": tunnel_config})
        bridge = Bridge(home, cfg, database_url="sqlite:///" + home.demo_db.as_posix().lstrip("/"))
        recorder = Recorder()
        bridge.events.subscribe(recorder)
        host = ServerHost(bridge)
        url = await host.start()
        running = RunningServer(host, url, aiohttp.ClientSession())
        started.append(running)
        await running.create_key("voka", ("query", "action"))
        return running, recorder

    yield factory
    for running in started:
        await running.session.close()
        if running.host.runner is not None:
            await running.host.stop()


async def audit_rows(server: RunningServer) -> list[dict[str, Any]]:
    await server.bridge.audit.flush()
    return await server.bridge.on_state(server.bridge.audit.recent, 500)
