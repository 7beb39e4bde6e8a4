"""Shared MCP sessions: two stores over one state.sqlite3, as two workers of `serve --workers 2` hold them."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.mcp import sessions
from server.mcp.sessions import SessionLimit, SharedSessionStore
from server.state import connect_state


async def run_here(fn: Any, *args: Any) -> Any:
    return fn(*args)


@pytest.fixture
def connections(tmp_path: Path) -> Iterator[list[sqlite3.Connection]]:
    conns = [connect_state(tmp_path / "state.sqlite3") for _ in range(2)]
    yield conns
    for conn in conns:
        conn.close()


def stores(connections: list[sqlite3.Connection], **limits: Any) -> list[SharedSessionStore]:
    return [SharedSessionStore(lambda c=conn: c, run_here, **limits) for conn in connections]


async def test_a_session_opened_on_one_worker_is_found_ended_and_refused_on_another(connections) -> None:
    first, second = stores(connections)
    session = await first.open("key-a", "2025-11-25", {"name": "voka"})
    found = await second.find(session.id, "key-a")
    assert found is not None and (found.version, found.client_info) == ("2025-11-25", {"name": "voka"})
    assert await second.find(session.id, "key-b") is None  # someone else's session
    await second.mark_initialized(found)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    session.streams.add(queue)  # the first worker holds this session's stream
    await first.upkeep()
    assert queue.empty()  # the record is there: the stream stays
    await second.close(found)
    await first.upkeep()  # the first worker's stream ends as the record did, without a request
    assert queue.get_nowait() is None
    assert await first.find(session.id, "key-a") is None
    assert len(first) == 0


async def test_the_per_key_cap_counts_every_workers_sessions(connections) -> None:
    first, second = stores(connections, per_key=2)
    one = await first.open("key-a", "2025-11-25", {})
    two = await second.open("key-a", "2025-11-25", {})
    other = await second.open("key-b", "2025-11-25", {})  # another key has its own cap
    three = await first.open("key-a", "2025-11-25", {})  # the least recently used one makes room
    assert await second.find(one.id, "key-a") is None
    assert all([await first.find(two.id, "key-a"), await second.find(three.id, "key-a"),
                await first.find(other.id, "key-b")])
    for held in (two, three):  # busy here: neither may be pushed out
        (await first.find(held.id, "key-a")).in_flight += 1  # type: ignore[union-attr]
    with pytest.raises(SessionLimit):
        await first.open("key-a", "2025-11-25", {})


async def test_idle_sessions_expire_by_their_stored_last_use(connections) -> None:
    first, second = stores(connections, idle_timeout=0.3)
    session = await first.open("key-a", "2025-11-25", {})
    await asyncio.sleep(0.5)
    assert await second.find(session.id, "key-a") is None
    assert connections[0].execute("SELECT count(*) FROM mcp_sessions").fetchone()[0] == 0


async def test_a_session_busy_on_another_worker_is_never_pushed_out_by_the_cap(connections) -> None:
    first, second = stores(connections, per_key=1)
    held = await first.open("key-a", "2025-11-25", {})
    copy = await second.find(held.id, "key-a")
    assert copy is not None
    queue: asyncio.Queue[Any] = asyncio.Queue()
    copy.streams.add(queue)  # the second worker holds this session's stream
    await second.upkeep()
    with pytest.raises(SessionLimit):  # as one process refuses rather than end a session in use
        await first.open("key-a", "2025-11-25", {})
    assert await first.find(held.id, "key-a") is not None and queue.empty()
    copy.streams.clear()  # the stream closed: once its hold lapses the session is idle again
    connections[0].execute("UPDATE mcp_sessions SET held_until = 0")
    replacement = await first.open("key-a", "2025-11-25", {})
    assert await second.find(held.id, "key-a") is None
    assert await second.find(replacement.id, "key-a") is not None


async def test_local_copies_are_bounded_and_dropped_once_their_record_is_gone(connections) -> None:
    first, second = stores(connections, total=3)
    for _ in range(3):  # sessions come and go on the first worker; the second serves each of them
        opened = [await first.open(f"key-{i}", "2025-11-25", {}) for i in range(3)]
        assert all([await second.find(s.id, s.key_id) for s in opened])
        for session in opened:
            await first.close(session)
    assert len(second) <= 3  # never more copies than the server may hold sessions
    kept = await first.open("key-a", "2025-11-25", {})
    ended = await first.open("key-b", "2025-11-25", {})
    assert await second.find(kept.id, "key-a") and await second.find(ended.id, "key-b")
    await first.close(ended)  # ended on the first worker: the second's copy goes at its next upkeep
    await second.upkeep()
    assert {s.id for s in second.all()} == {kept.id}


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_upkeep_that_fails_is_logged_and_runs_again(connections, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "TOUCH_SECONDS", 0.05)
    kept = Kept()  # on the module's logger itself: "server" may not propagate once a server set up logging
    monkeypatch.setattr(sessions.log, "handlers", [kept])
    calls: list[str] = []

    async def state_thread_once_gone(fn: Any, *args: Any) -> Any:
        calls.append(fn.__name__)
        if fn.__name__ == "_touch" and calls.count("_touch") == 1:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        return fn(*args)

    first = SharedSessionStore(lambda: connections[0], state_thread_once_gone)
    other = SharedSessionStore(lambda: connections[1], run_here)
    session = await first.open("key-a", "2025-11-25", {})
    queue: asyncio.Queue[Any] = asyncio.Queue()
    session.streams.add(queue)
    await other.close(await other.find(session.id, "key-a"))  # type: ignore[arg-type]
    upkeep = asyncio.ensure_future(first.run())
    try:
        assert await asyncio.wait_for(queue.get(), 5) is None  # a later round ended the stream
        assert not upkeep.done()
    finally:
        upkeep.cancel()
    assert kept.records and kept.records[0].exc_info
    assert "cannot schedule" in str(kept.records[0].exc_info[1])
