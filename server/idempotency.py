"""Idempotency keys for actions: Voka retries after a timeout, and a retry must not place a second order.

An action sent with `Idempotency-Key: K` runs once per (API key, K). A repeat with the same body gets the
first answer again; the same K with a different body is a 409. Records live in state.sqlite3 for 24 h.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from server.errors import BadRequest, Conflict

RETENTION = dt.timedelta(hours=24)
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def fingerprint(tool: str, args: Any) -> str:
    return hashlib.sha256(json.dumps([tool, args], sort_keys=True, default=str).encode()).hexdigest()


def check_key(value: str) -> str:
    if not _VALID.match(value):
        raise BadRequest("Idempotency-Key must be 1-128 letters, digits or . _ : -",
                         code="invalid_idempotency_key")
    return value


class IdempotencyStore:
    """Replays stored answers; runs concurrent duplicates once (the second waits for the first)."""

    def __init__(self, conn: sqlite3.Connection, run_on_state: Callable[..., Awaitable[Any]]) -> None:
        self._conn = conn
        self._on_state = run_on_state
        self._in_flight: dict[tuple[str, str], asyncio.Future[Any]] = {}

    def _lookup(self, key_id: str, idem: str) -> tuple[str, str] | None:
        cutoff = (dt.datetime.now(dt.UTC) - RETENTION).isoformat()
        row = self._conn.execute(
            "SELECT fingerprint, response FROM idempotency "
            "WHERE key_id = ? AND idem_key = ? AND created_at > ?",
            (key_id, idem, cutoff)).fetchone()
        return (row[0], row[1]) if row else None

    def _save(self, key_id: str, idem: str, print_: str, response: str) -> None:
        now = dt.datetime.now(dt.UTC)
        expired = (now - RETENTION).isoformat()
        self._conn.execute("DELETE FROM idempotency WHERE created_at < ?", (expired,))
        self._conn.execute(
            "INSERT OR REPLACE INTO idempotency "
            "(key_id, idem_key, fingerprint, status, response, created_at) VALUES (?, ?, ?, 200, ?, ?)",
            (key_id, idem, print_, response, now.isoformat()))

    async def run_once(self, key_id: str, idem: str, print_: str, action: Callable[[], Awaitable[Any]],
                       encode: Callable[[Any], str], decode: Callable[[str], Any]) -> Any:
        slot = (key_id, idem)
        while (pending := self._in_flight.get(slot)) is not None:
            await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = future  # claimed before any await, so duplicates queue behind it
        try:
            stored = await self._on_state(self._lookup, key_id, idem)
            if stored is not None:
                if stored[0] != print_:
                    raise Conflict("This Idempotency-Key was already used for a different request.",
                                   code="idempotency_conflict")
                return decode(stored[1])
            result = await action()
            await self._on_state(self._save, key_id, idem, print_, encode(result))
            return result
        finally:
            del self._in_flight[slot]
            future.set_result(None)
