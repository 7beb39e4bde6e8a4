"""Handshake-era MCP sessions: unguessable ids bound to the key that opened them, idle expiry, caps.

A session is only a little state (negotiated version, whether `initialized` arrived, open notification
streams); losing one costs the client a re-initialize, never data. So the store keeps them in memory,
forgets idle ones, and caps how many one key may hold so a looping client cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

IDLE_TIMEOUT_SECONDS = 30 * 60
MAX_SESSIONS_PER_KEY = 64
MAX_SESSIONS = 10_000
STREAM_QUEUE = 64


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
