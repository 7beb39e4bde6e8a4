"""Idempotency keys for actions: Voka retries after a timeout, and a retry must not place a second order.

An action sent with `Idempotency-Key: K` runs once per (API key, K). A repeat with the same body gets the
first answer again; the same K with a different body is a 409. Records live in state.sqlite3 for 24 h.

The key is claimed in state.sqlite3 (a pending record) before the action runs, so a duplicate that reaches
another worker of `serve --workers N` waits for the first answer instead of running the action again.
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
ABANDONED = dt.timedelta(minutes=2)  # at least this old: the claim was left by a process that died mid-action
PENDING, DONE = 0, 200
WAIT_SECONDS = 0.05  # how often a duplicate looks for the first answer (bounded by the request deadline)
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

    def __init__(self, conn: sqlite3.Connection, run_on_state: Callable[..., Awaitable[Any]], *,
                 abandoned_after: dt.timedelta = ABANDONED) -> None:
        """`abandoned_after`: longer than any action can run (an action never outlives its request), so
        an older pending claim belongs to a process that died and a retry may take it over."""
        self._conn = conn
        self._on_state = run_on_state
        self._abandoned = max(abandoned_after, ABANDONED)
        self._in_flight: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._finishing: set[asyncio.Task[Any]] = set()  # shielded writes still running (kept referenced)

    def _claim(self, key_id: str, idem: str, print_: str, now: dt.datetime) -> tuple[int, str, str] | None:
        """None: the key is now claimed by this caller, who runs the action. Otherwise the live record
        (status, fingerprint, response): an answer to replay, or a claim another request holds."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute(
                "SELECT status, fingerprint, response, created_at FROM idempotency "
                "WHERE key_id = ? AND idem_key = ?", (key_id, idem)).fetchone()
            live_for = RETENTION if row is not None and row[0] == DONE else self._abandoned
            if row is not None and row[3] > (now - live_for).isoformat():
                self._conn.execute("COMMIT")
                return row[0], row[1], row[2]
            self._conn.execute(
                "INSERT OR REPLACE INTO idempotency "
                "(key_id, idem_key, fingerprint, status, response, created_at) VALUES (?, ?, ?, ?, '', ?)",
                (key_id, idem, print_, PENDING, now.isoformat()))
            self._conn.execute("COMMIT")
            return None
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _release(self, key_id: str, idem: str) -> None:
        """The action failed: drop the claim so a retry may run it."""
        self._conn.execute("DELETE FROM idempotency WHERE key_id = ? AND idem_key = ? AND status = ?",
                           (key_id, idem, PENDING))

    def _save(self, key_id: str, idem: str, print_: str, response: str) -> None:
        now = dt.datetime.now(dt.UTC)
        expired = (now - RETENTION).isoformat()
        self._conn.execute("DELETE FROM idempotency WHERE created_at < ?", (expired,))
        self._conn.execute(
            "INSERT OR REPLACE INTO idempotency "
            "(key_id, idem_key, fingerprint, status, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, idem, print_, DONE, response, now.isoformat()))

    async def _finish(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a save or release on the state thread to the end even if the caller is cancelled (its
        request deadline): a cancelled job still queued behind others would never run, leaving the claim
        pending, so duplicates would wait until their own deadline and, once the claim counts as
        abandoned, a retry would run the action again. The cancellation still reaches the caller."""
        task = asyncio.ensure_future(self._on_state(fn, *args))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        await asyncio.shield(task)

    async def run_once(self, key_id: str, idem: str, print_: str, action: Callable[[], Awaitable[Any]],
                       encode: Callable[[Any], str], decode: Callable[[str], Any]) -> Any:
        slot = (key_id, idem)
        while (pending := self._in_flight.get(slot)) is not None:
            await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = future  # claimed before any await, so duplicates queue behind it
        try:
            while (stored := await self._on_state(self._claim, key_id, idem, print_,
                                                  dt.datetime.now(dt.UTC))) is not None:
                status, stored_print, response = stored
                if stored_print != print_:
                    raise Conflict("This Idempotency-Key was already used for a different request.",
                                   code="idempotency_conflict")
                if status == DONE:
                    return decode(response)
                await asyncio.sleep(WAIT_SECONDS)  # another worker runs it: wait for its answer
            try:
                result = await action()
            except BaseException:
                await self._finish(self._release, key_id, idem)
                raise
            await self._finish(self._save, key_id, idem, print_, encode(result))
            return result
        finally:
            del self._in_flight[slot]
            future.set_result(None)
