"""The server's event loop: uvloop by default where it is installed, asyncio's own on request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from server import eventloop
from server.bridge import Bridge
from server.config import Config
from server.host import ThreadedServerHost
from server.paths import Paths
from tests.server.test_cli import Served, post


async def _which() -> str:
    return eventloop.running()


@contextlib.contextmanager
def warnings() -> Iterator[list[str]]:
    """What server.eventloop warns (caplog misses it once the server's own logging is set up)."""
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("server.eventloop")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def test_run_uses_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV_VAR, raising=False)
    assert eventloop.run(_which()) == "uvloop"
    loop = eventloop.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_asyncio_on_request(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(eventloop.ENV_VAR, value)
    assert eventloop.run(_which()) == "asyncio"
    loop = eventloop.new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_unknown_choice_warns_and_falls_back_to_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV_VAR, "tokio")
    with warnings() as seen:
        assert eventloop.run(_which()) == "uvloop"
    assert seen == ["VOKA_EVENT_LOOP='tokio' is not one of auto, uvloop, asyncio; using auto"]


def test_run_returns_the_result_and_propagates_errors() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert eventloop.run(answer()) == 42
    with pytest.raises(ValueError, match="boom"):
        eventloop.run(fail())


def _listening(home: Path) -> dict:
    lines = (home / "logs" / "combined.log").read_text().splitlines()
    return next(json.loads(line) for line in lines if json.loads(line)["message"] == "listening")


@pytest.mark.parametrize(("choice", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_serve_runs_on_the_chosen_loop_and_says_so(tmp_path: Path, choice: str | None, expected: str) -> None:
    home = tmp_path / "home"
    served = Served(home, env={eventloop.ENV_VAR: choice} if choice else {})
    try:
        status, body = post(served.url + "/query", {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}},
                            served.first_key())
        assert status == 200 and body["data"][0]["quantity"] >= 0
    finally:
        assert served.stop() == 0
    assert _listening(home)["event_loop"] == expected


def test_the_desktop_apps_server_thread_runs_uvloop(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV_VAR, raising=False)
    host = ThreadedServerHost(Bridge(home, Config.model_validate({"server": {"port": 0}}),
                                     database_url="sqlite:///" + home.demo_db.as_posix().lstrip("/")))
    try:
        url = host.start()
        assert isinstance(host.loop, uvloop.Loop)
        with urllib.request.urlopen(url + "/health", timeout=10) as response:
            assert response.status == 200 and json.loads(response.read())["status"] == "healthy"
    finally:
        host.stop()
        host.close()


@pytest.mark.parametrize(("choice", "warned"), [("auto", False), ("uvloop", True)])
def test_without_uvloop_asyncios_loop_runs(monkeypatch: pytest.MonkeyPatch, choice: str, warned: bool) -> None:
    """Windows has no uvloop: `import uvloop` fails there, as it does here with the module blocked."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.setenv(eventloop.ENV_VAR, choice)
    with warnings() as seen:
        assert eventloop.run(_which()) == "asyncio"
    assert bool(seen) == warned
    if warned:
        assert "uvloop is not installed" in seen[0]
