"""Shared fixtures: a real keyring, real homes with the demo database, and real servers on real ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import keyring
import keyring.backends.fail
import pytest

from server.bridge import Bridge
from server.bundled import ensure_default_catalog, ensure_demo_database
from server.config import Config
from server.host import ServerHost
from server.paths import Paths, resolve_paths
from tests.keyring_session import KeyringSession

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
for _name in ("MCP_API_KEY", "DATABASE_URL", "VOKA_BRIDGE_HOME"):
    os.environ.pop(_name, None)


_KEYRING = pytest.StashKey[KeyringSession]()


@pytest.fixture(scope="session", autouse=True)
def real_keyring(request: pytest.FixtureRequest) -> Iterator[KeyringSession | None]:
    """A real Secret Service in a temp folder where possible (None: the platform keyring is used)."""
    session = KeyringSession()
    if KeyringSession.available():
        session.start()
        request.config.stash[_KEYRING] = session
    try:
        yield session if session.daemon is not None else None
    finally:
        session.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say when the private gnome-keyring-daemon crashed and was restarted, so it never goes unseen."""
    session = config.stash.get(_KEYRING, None)
    if session is not None and session.crashes:
        terminalreporter.write_sep("-", f"gnome-keyring-daemon crashed {len(session.crashes)} time(s), restarted")
        for crash in session.crashes:
            terminalreporter.write_line(crash)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "demo.sqlite3"
    ensure_demo_database(path)
    return path


def demo_home(root: Path, template: Path) -> Paths:
    """A portable home with the demo database and the default catalog, as `serve --demo` lays it out
    (no config.toml: all defaults, as on a first run)."""
    paths = resolve_paths(root)
    paths.ensure()
    shutil.copy(template, paths.demo_db)
    ensure_default_catalog(paths.tools_file)
    return paths


@pytest.fixture
def home(tmp_path: Path, demo_template: Path) -> Paths:
    return demo_home(tmp_path / "home", demo_template)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A real server on a real port, and helpers to talk to it like Voka would."""

    host: ServerHost
    url: str
    session: aiohttp.ClientSession
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def bridge(self) -> Bridge:
        return self.host.bridge

    async def create_key(self, name: str, scopes: tuple[str, ...] = ("query", "action"), **kw: Any) -> str:
        _, secret = await self.bridge.on_state(
            lambda: self.bridge.keys.create(name, scopes, **kw))
        await self.bridge.reload_keys()
        self.keys[name] = secret
        return secret

    async def post(self, path: str, body: Any = None, *, key: str | None = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        sent = {"Content-Type": "application/json"}
        if key is not None:
            sent["x-api-key"] = key
        sent.update(headers or {})
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        async with self.session.post(self.url + path, data=data, headers=sent) as response:
            try:
                payload = await response.json(content_type=None)
            except ValueError:
                payload = await response.text()
            return response.status, payload, response

    async def get(self, path: str, *, key: str | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {"x-api-key": key} if key else {}
        async with self.session.get(self.url + path, headers=headers) as response:
            return response.status, await response.json(content_type=None), response


ServerFactory = Callable[..., Any]


@pytest.fixture
async def make_server(home: Paths) -> AsyncIterator[ServerFactory]:
    """Start servers on free ports; `await make_server(config_overrides={...}, database_url=...)`."""
    started: list[RunningServer] = []

    async def factory(config: dict[str, Any] | None = None, *, database_url: str | None = None,
                      static_keys: list[Any] | None = None, paths: Paths = home) -> RunningServer:
        data = {"server": {"port": 0}, **(config or {})}
        data["server"] = {"port": 0, **data.get("server", {})}
        cfg = Config.model_validate(data)
        url = database_url or "sqlite:///" + paths.demo_db.as_posix().lstrip("/")
        bridge = Bridge(paths, cfg, database_url=url, static_keys=static_keys)
        host = ServerHost(bridge)
        base = await host.start()
        server = RunningServer(host, base, aiohttp.ClientSession())
        started.append(server)
        return server

    yield factory
    for server in started:
        await server.session.close()
        if server.host.runner is not None:
            await server.host.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The demo server with keys `reader` (query), `writer` (query, action) and `analyst` (+sql)."""
    running: RunningServer = await make_server()
    await running.create_key("reader", ("query",))
    await running.create_key("writer", ("query", "action"))
    await running.create_key("analyst", ("query", "action", "sql"))
    return running


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """This process without a usable keyring, as on a headless Linux box with no Secret Service (an app
    test requests it before make_desktop, so the app stops before the keyring comes back)."""
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)
