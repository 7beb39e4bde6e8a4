"""Handshake-era MCP sessions: unguessable ids bound to the key that opened them, idle expiry, caps.

A session is only a little state (negotiated version, whether `initialized` arrived, open notification
streams); losing one costs the client a re-initialize, never data. So the store keeps them in memory,
forgets idle ones, and caps how many one key may hold so a looping client cannot exhaust memory.

With `serve --workers N` a client's connections may reach different workers, so `SharedSessionStore`
keeps the record in state.sqlite3 and reads it on every request (a DELETE on one worker ends the session
on all); open streams and cancellation stay with the worker that holds the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS = 30 * 60
TOUCH_SECONDS = 5.0  # a shared session's stored last use is written at most this often
HOLD_SECONDS = 3 * TOUCH_SECONDS  # a shared session busy on a worker is held (never evicted) this long
MAX_SESSIONS_PER_KEY = 64
MAX_SESSIONS = 10_000
STREAM_QUEUE = 64
_CHECK_CHUNK = 500  # ids per "which of these still exist" query (below SQLite's bound on parameters)


@dataclass(eq=False)
class Session:
    id: str
    key_id: str
    version: str
    client_info: dict[str, Any]
    last_used: float
    initialized: bool = False
    streams: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)
    in_flight: int = 0
    pending: dict[int | str, asyncio.Future[None]] = field(default_factory=dict)  # request id -> cancel

    def busy(self) -> bool:
        return bool(self.streams) or self.in_flight > 0

    def notify(self, message: dict[str, Any]) -> None:
        """Queue a server notification on every open stream of this session (dropped if one is stuck)."""
        for queue in self.streams:
            if queue.qsize() < STREAM_QUEUE:
                queue.put_nowait(message)

    def close_streams(self) -> None:
        for queue in self.streams:
            queue.put_nowait(None)


class SessionLimit(Exception):
    """Every session slot is held by a session in use; the client should retry later."""


class SessionStore:
    def __init__(self, *, idle_timeout: float = IDLE_TIMEOUT_SECONDS, per_key: int = MAX_SESSIONS_PER_KEY,
                 total: int = MAX_SESSIONS) -> None:
        self.idle_timeout = idle_timeout
        self.per_key = per_key
        self.total = total
        self._sessions: dict[str, Session] = {}
        self._by_key: dict[str, dict[str, Session]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._sessions)

    # The HTTP adapter's calls: plain here, a state.sqlite3 round trip in SharedSessionStore.
    async def open(self, key_id: str, version: str, client_info: dict[str, Any]) -> Session:
        return self.create(key_id, version, client_info)

    async def find(self, session_id: str, key_id: str) -> Session | None:
        return self.get(session_id, key_id)

    async def close(self, session: Session) -> None:
        self.end(session)

    async def mark_initialized(self, session: Session) -> None:
        session.initialized = True

    async def run(self) -> None:
        """Background upkeep while the server runs (none for the in-memory store)."""

    def for_key(self, key_id: str) -> list[Session]:
        return list(self._by_key.get(key_id, {}).values())

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def create(self, key_id: str, version: str, client_info: dict[str, Any]) -> Session:
        """A new session for this key; at the per-key cap its least recently used idle session ends."""
        now = time.monotonic()
        self._sweep(now)
        owned = self._by_key.setdefault(key_id, {})
        if len(owned) >= self.per_key:
            self._evict_oldest(owned.values())
        if len(self._sessions) >= self.total:
            self._evict_oldest(self._sessions.values())
        session = Session(secrets.token_urlsafe(32), key_id, version, client_info, now)
        self._sessions[session.id] = session
        owned[session.id] = session
        return session

    def _evict_oldest(self, candidates: Any) -> None:
        idle = [s for s in candidates if not s.busy()]
        if not idle:
            raise SessionLimit("Too many open MCP sessions; close one (HTTP DELETE) or retry later.")
        self.end(min(idle, key=lambda s: s.last_used))

    def get(self, session_id: str, key_id: str) -> Session | None:
        """The live session with this id opened by this key; None for unknown, expired or someone else's."""
        now = time.monotonic()
        self._sweep(now)
        session = self._sessions.get(session_id)
        if session is None or not secrets.compare_digest(session.key_id, key_id):
            return None
        if self._expired(session, now):
            self.end(session)
            return None
        session.last_used = now
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        owned = self._by_key.get(session.key_id)
        if owned is not None:
            owned.pop(session.id, None)
            if not owned:
                del self._by_key[session.key_id]
        session.close_streams()

    def end_all(self) -> None:
        for session in list(self._sessions.values()):
            self.end(session)

    def _expired(self, session: Session, now: float) -> bool:
        return not session.busy() and now - session.last_used > self.idle_timeout

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(60.0, self.idle_timeout / 4)
        for session in [s for s in self._sessions.values() if self._expired(s, now)]:
            self.end(session)

    def broadcast(self, message: dict[str, Any]) -> int:
        """Send a notification to every session with an open stream; how many got it."""
        reached = 0
        for session in self._sessions.values():
            if session.streams:
                session.notify(message)
                reached += 1
        return reached


_COLUMNS = "key_id, version, client_info, initialized, last_used"


class SharedSessionStore(SessionStore):
    """Session records in state.sqlite3 for a multi-process server; this worker's streams in memory.

    Every call of the adapter reads the record (on the state thread, `run_on_state`), so an end or an
    expiry seen by one worker holds on all. Idle expiry uses the stored last use, written at most every
    TOUCH_SECONDS, and kept fresh for sessions busy here (an open stream).

    Stored times are `time.monotonic()`, not wall-clock time, so a clock step (NTP, a suspended VM) does
    not end every session at once. They compare across the workers because all of them run on one machine
    and the clock is system-wide there (CLOCK_MONOTONIC on Linux, mach_absolute_time on macOS), and no
    stored value outlives a boot: the records are deleted whenever the server starts.

    Each worker keeps local copies of the sessions it served (for their streams and cancellation), at
    most `total` of them; upkeep drops copies whose record is gone (ended or expired on another worker).
    """

    def __init__(self, conn: Callable[[], sqlite3.Connection], run_on_state: Callable[..., Awaitable[Any]],
                 **limits: Any) -> None:
        super().__init__(**limits)
        self._conn = conn
        self._on_state = run_on_state

    # ---- on the state thread ---------------------------------------------------------------
    def _lookup(self, session_id: str, now: float) -> tuple[Any, ...] | None:
        conn = self._conn()
        row = conn.execute(f"SELECT {_COLUMNS} FROM mcp_sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        if now - row[4] > self.idle_timeout:
            conn.execute("DELETE FROM mcp_sessions WHERE id = ?", (session_id,))
            return None
        if now - row[4] > TOUCH_SECONDS:
            conn.execute("UPDATE mcp_sessions SET last_used = ? WHERE id = ?", (now, session_id))
        return tuple(row)

    def _insert(self, session: Session, now: float, busy: set[str]) -> list[str]:
        """Add the record within the caps; returns the ids of the idle sessions it pushed out. As with one
        process, a session busy anywhere (busy here, or held by another worker's upkeep) is never one."""
        conn = self._conn()
        ended: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM mcp_sessions WHERE last_used < ?", (now - self.idle_timeout,))
            caps = (("key_id = ?", (session.key_id,), self.per_key), ("1", (), self.total))
            for where, args, cap in caps:
                count = conn.execute(f"SELECT count(*) FROM mcp_sessions WHERE {where}", args).fetchone()[0]
                if count < cap:
                    continue
                idle = [row[0] for row in conn.execute(  # held: busy on some worker (its upkeep renews it)
                    f"SELECT id FROM mcp_sessions WHERE {where} AND held_until <= ? "
                    "ORDER BY last_used LIMIT ?", (*args, now, len(busy) + 1)) if row[0] not in busy]
                if not idle:
                    raise SessionLimit("Too many open MCP sessions; close one (HTTP DELETE) or retry later.")
                conn.execute("DELETE FROM mcp_sessions WHERE id = ?", (idle[0],))
                ended.append(idle[0])
            conn.execute(f"INSERT INTO mcp_sessions (id, {_COLUMNS}) VALUES (?, ?, ?, ?, 0, ?)",
                         (session.id, session.key_id, session.version, json.dumps(session.client_info), now))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return ended

    def _execute(self, sql: str, *args: Any) -> None:
        self._conn().execute(sql, args)

    # ---- the adapter's calls ---------------------------------------------------------------
    async def open(self, key_id: str, version: str, client_info: dict[str, Any]) -> Session:
        session = Session(secrets.token_urlsafe(32), key_id, version, client_info, time.monotonic())
        busy = {s.id for s in self._sessions.values() if s.busy()}
        for ended in await self._on_state(self._insert, session, time.monotonic(), busy):
            self._forget(ended)
        self._sessions[session.id] = session
        self._by_key.setdefault(key_id, {})[session.id] = session
        return session

    async def find(self, session_id: str, key_id: str) -> Session | None:
        row = await self._on_state(self._lookup, session_id, time.monotonic())
        if row is None:
            self._forget(session_id)
            return None
        owner, version, client_info, initialized, _ = row
        if not secrets.compare_digest(owner, key_id):
            return None
        session = self._sessions.get(session_id)
        if session is None:
            self._make_room()
            session = Session(session_id, owner, version, json.loads(client_info), time.monotonic())
            self._sessions[session_id] = session
            self._by_key.setdefault(owner, {})[session_id] = session
        session.initialized = session.initialized or bool(initialized)
        session.last_used = time.monotonic()
        return session

    async def close(self, session: Session) -> None:
        await self._on_state(self._execute, "DELETE FROM mcp_sessions WHERE id = ?", session.id)
        self.end(session)

    async def mark_initialized(self, session: Session) -> None:
        session.initialized = True
        await self._on_state(self._execute, "UPDATE mcp_sessions SET initialized = 1 WHERE id = ?",
                             session.id)

    async def run(self) -> None:
        """Upkeep every TOUCH_SECONDS for as long as the server runs: a failed round is logged, and the
        next one runs all the same (a dead upkeep would let held sessions be evicted and streams linger)."""
        while True:
            await asyncio.sleep(TOUCH_SECONDS)
            try:
                await self.upkeep()
            except Exception:
                log.exception("MCP session upkeep failed; retrying in %g s", TOUCH_SECONDS)

    async def upkeep(self) -> None:
        """Keep the stored last use of sessions busy here fresh, end the streams of sessions ended
        elsewhere (a DELETE on another worker), and forget local copies that are idle or whose record
        is gone."""
        busy = [s.id for s in self._sessions.values() if s.busy()]
        idle = [s.id for s in self._sessions.values() if not s.busy()]
        if busy or idle:
            for gone in await self._on_state(self._touch, busy, idle, time.monotonic()):
                self._forget(gone)
        now = time.monotonic()
        for session in [s for s in self._sessions.values() if self._expired(s, now)]:
            self.end(session)  # only the copy here: the record expires by its own last use

    def _touch(self, busy: list[str], idle: list[str], now: float) -> list[str]:
        """On the state thread: mark the busy sessions used now and held; the ids of either list that no
        longer have a record."""
        conn = self._conn()
        gone = [session_id for session_id in busy if not conn.execute(
            "UPDATE mcp_sessions SET last_used = ?, held_until = ? WHERE id = ?",
            (now, now + HOLD_SECONDS, session_id)).rowcount]
        for start in range(0, len(idle), _CHECK_CHUNK):
            chunk = idle[start:start + _CHECK_CHUNK]
            found = {row[0] for row in conn.execute(
                f"SELECT id FROM mcp_sessions WHERE id IN ({','.join('?' * len(chunk))})", chunk)}
            gone += [session_id for session_id in chunk if session_id not in found]
        return gone

    def _make_room(self) -> None:
        """Before adding a local copy at `total` copies, drop the idle one used longest ago (only the copy:
        the record stays, and the next request for it makes a new copy)."""
        if len(self._sessions) < self.total:
            return
        idle = [s for s in self._sessions.values() if not s.busy()]
        if idle:
            self.end(min(idle, key=lambda s: s.last_used))

    def _forget(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            self.end(session)
