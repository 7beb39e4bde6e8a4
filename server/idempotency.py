"""Idempotency keys for actions: Voka retries after a timeout, and a retry must not place a second order.

An action sent with an idempotency key K (the `Idempotency-Key` header on REST and MCP, or
`params._meta["voka/idempotencyKey"]` on an MCP `tools/call`) runs once per (API key, K). A repeat with
the same tool and arguments gets the first answer again, marked as a replay; the same K with anything
else is a 409. Records live in state.sqlite3 for 24 h.

A record goes through three states:
- PENDING: claimed before the action runs, by this process (its `owner`, server/liveness.py). A duplicate
  that reaches another worker of `serve --workers N` waits for the answer instead of running the action.
- PREPARED: the action's writes are done and about to be committed; the answer is stored with the
  action's intent (server/ledger.py), whose commit can be checked in the shop database afterwards.
- DONE: the action committed; the answer is replayed.

When the owner died (kill -9, a crash, power loss), its records are settled at once, never after a
timeout: a PENDING one never reached its commit, so the retry runs the action; a PREPARED one is settled
by the ledger from what the database says (committed: DONE and replayed; not: removed, and the retry
runs it). Records from before owners were kept fall back to the old rule (taken over after
`abandoned_after`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from server.errors import BadRequest, Conflict
from server.liveness import ProcessLease

RETENTION = dt.timedelta(hours=24)
ABANDONED = dt.timedelta(minutes=2)  # records without an owner: at least this old, their process died
PENDING, PREPARED, DONE = 0, 1, 200
WAIT_SECONDS = 0.05  # how often a duplicate looks for the first answer (bounded by the request deadline)
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def fingerprint(tool: str, args: Any) -> str:
    return hashlib.sha256(json.dumps([tool, args], sort_keys=True, default=str).encode()).hexdigest()


def check_key(value: Any) -> str:
    if not isinstance(value, str) or not _VALID.match(value):
        raise BadRequest("Idempotency-Key must be 1-128 letters, digits or . _ : -",
                         code="invalid_idempotency_key")
    return value


@dataclass
class Slot:
    """One claimed (API key, idempotency key): what the ledger records the answer under."""

    key_id: str
    idem: str
    fingerprint: str
    owner: str
    recorded: bool = False  # the answer was saved in step with the action's commit


# ---- SQL used inside the ledger's state transactions (no transaction control here) ---------------
def mark_prepared(conn: sqlite3.Connection, slot: Slot, intent: str, response: str) -> None:
    conn.execute("UPDATE idempotency SET status = ?, response = ?, intent = ? "
                 "WHERE key_id = ? AND idem_key = ? AND owner = ?",
                 (PREPARED, response, intent, slot.key_id, slot.idem, slot.owner))


def mark_done(conn: sqlite3.Connection, key_id: str, idem: str, intent: str) -> None:
    """The action of `intent` committed: its prepared answer becomes the one replayed for 24 h."""
    conn.execute("UPDATE idempotency SET status = ?, intent = NULL, created_at = ? "
                 "WHERE key_id = ? AND idem_key = ? AND intent = ?",
                 (DONE, dt.datetime.now(dt.UTC).isoformat(), key_id, idem, intent))


def drop_prepared(conn: sqlite3.Connection, key_id: str, idem: str, intent: str) -> None:
    """The action of `intent` did not commit: the key is free, and a retry runs the action."""
    conn.execute("DELETE FROM idempotency WHERE key_id = ? AND idem_key = ? AND intent = ?",
                 (key_id, idem, intent))


def drop_dead_claims(conn: sqlite3.Connection, lease: ProcessLease) -> int:
    """PENDING claims whose process has died never reached their commit: free them."""
    dead = [(key_id, idem, owner) for key_id, idem, owner in conn.execute(
        "SELECT key_id, idem_key, owner FROM idempotency WHERE status = ? AND owner IS NOT NULL",
        (PENDING,)).fetchall() if not lease.alive(owner)]
    for key_id, idem, owner in dead:
        conn.execute("DELETE FROM idempotency WHERE key_id = ? AND idem_key = ? AND status = ? AND owner = ?",
                     (key_id, idem, PENDING, owner))
    return len(dead)


def prune(conn: sqlite3.Connection) -> int:
    """Answers older than the retention period go (the ledger's settler calls this hourly)."""
    cutoff = (dt.datetime.now(dt.UTC) - RETENTION).isoformat()
    return conn.execute("DELETE FROM idempotency WHERE created_at < ? AND status = ?",
                        (cutoff, DONE)).rowcount


@dataclass
class _Stored:
    status: int
    fingerprint: str
    response: str
    intent: str | None
    settle_first: bool  # prepared by a request that is gone: the ledger must settle it


class IdempotencyStore:
    """Replays stored answers; runs concurrent duplicates once (the second waits for the first)."""

    def __init__(self, conn: sqlite3.Connection, run_on_state: Callable[..., Awaitable[Any]], *,
                 lease: ProcessLease | None = None,
                 settle: Callable[[str], Awaitable[bool]] | None = None,
                 abandoned_after: dt.timedelta = ABANDONED) -> None:
        """`lease`: this process's identity (a lease of its own when not given). `settle`: asks the
        ledger to settle an intent its dead owner left PREPARED. `abandoned_after`: for records without
        an owner only; longer than any action can run."""
        self._conn = conn
        self._on_state = run_on_state
        self.lease = lease
        self._settle = settle
        self._abandoned = max(abandoned_after, ABANDONED)
        self._anonymous = uuid.uuid4().hex  # without a lease: an identity nobody can check, so never "dead"
        self._in_flight: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._finishing: set[asyncio.Task[Any]] = set()  # shielded writes still running (kept referenced)

    def _alive(self, owner: str | None) -> bool:
        return True if self.lease is None else self.lease.alive(owner)

    @property
    def _owner(self) -> str:
        return self.lease.id if self.lease is not None else self._anonymous

    def _claim(self, key_id: str, idem: str, print_: str, now: dt.datetime) -> _Stored | None:
        """None: the key is now claimed by this caller, who runs the action. Otherwise the live record:
        an answer to replay, a claim another request holds, or a prepared action to settle first."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute(
                "SELECT status, fingerprint, response, created_at, owner, intent FROM idempotency "
                "WHERE key_id = ? AND idem_key = ?", (key_id, idem)).fetchone()
            stored = None if row is None else self._live(row, now)
            if stored is not None:
                self._conn.execute("COMMIT")
                return stored
            self._conn.execute(
                "INSERT OR REPLACE INTO idempotency (key_id, idem_key, fingerprint, status, response, "
                "created_at, owner, intent) VALUES (?, ?, ?, ?, '', ?, ?, NULL)",
                (key_id, idem, print_, PENDING, now.isoformat(), self._owner))
            self._conn.execute("COMMIT")
            return None
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _live(self, row: tuple[Any, ...], now: dt.datetime) -> _Stored | None:
        """The record as it stands, or None when it may be replaced: expired, or a claim that never
        reached its commit and whose request is gone (its process died, or it is this process's own:
        duplicates within a process queue in `run_once`, so no request of ours still holds it)."""
        status, print_, response, created_at, owner, intent = row
        if status == DONE:
            fresh = created_at > (now - RETENTION).isoformat()
            return _Stored(status, print_, response, None, False) if fresh else None
        if owner is None:  # a claim from before owners were kept: judged by its age
            fresh = created_at > (now - self._abandoned).isoformat()
            return _Stored(status, print_, response, intent, False) if fresh else None
        gone = owner == self._owner or not self._alive(owner)
        if status == PENDING and gone:
            return None
        return _Stored(status, print_, response, intent, status == PREPARED and gone)

    def _release(self, key_id: str, idem: str) -> None:
        """The action failed before it was prepared: drop the claim so a retry may run it. A prepared
        record stays: the ledger settles it from what the database says."""
        self._conn.execute("DELETE FROM idempotency WHERE key_id = ? AND idem_key = ? AND status = ?",
                           (key_id, idem, PENDING))

    def save(self, slot: Slot, response: str) -> None:
        """Record an answer outside the ledger (an action with nothing to commit in step with)."""
        now = dt.datetime.now(dt.UTC)
        self._conn.execute("DELETE FROM idempotency WHERE created_at < ? AND status = ?",
                           ((now - RETENTION).isoformat(), DONE))
        self._conn.execute(
            "INSERT OR REPLACE INTO idempotency (key_id, idem_key, fingerprint, status, response, "
            "created_at, owner, intent) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
            (slot.key_id, slot.idem, slot.fingerprint, DONE, response, now.isoformat()))

    async def _finish(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a save or release on the state thread to the end even if the caller is cancelled (its
        request deadline): a cancelled job still queued behind others would never run, leaving the claim
        pending, so duplicates would wait until their own deadline. The cancellation still reaches the
        caller."""
        task = asyncio.ensure_future(self._on_state(fn, *args))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        await asyncio.shield(task)

    async def run_once(self, key_id: str, idem: str, print_: str, action: Callable[[Slot], Awaitable[Any]],
                       encode: Callable[[Any], str], decode: Callable[[str], Any]) -> Any:
        """Run `action` once for (key_id, idem) and return its result, or `decode` of the first answer
        when this is a replay. The action gets the claimed Slot; when it records the answer itself (the
        ledger, in step with its commit), `slot.recorded` is set, else the answer is saved here."""
        slot_key = (key_id, idem)
        while (pending := self._in_flight.get(slot_key)) is not None:
            await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._in_flight[slot_key] = future  # claimed before any await, so duplicates queue behind it
        settled: set[str] = set()
        try:
            while (stored := await self._on_state(self._claim, key_id, idem, print_,
                                                  dt.datetime.now(dt.UTC))) is not None:
                if stored.fingerprint != print_:
                    raise Conflict("This Idempotency-Key was already used for a different request.",
                                   code="idempotency_conflict")
                if stored.status == DONE:
                    return decode(stored.response)
                if stored.settle_first and stored.intent and self._settle is not None \
                        and stored.intent not in settled:
                    settled.add(stored.intent)
                    if await self._settle(stored.intent):  # its request ended between commit and record
                        continue
                await asyncio.sleep(WAIT_SECONDS)  # another request or worker runs it: wait for its answer
            slot = Slot(key_id, idem, print_, self._owner)
            try:
                result = await action(slot)
            except BaseException:
                await self._finish(self._release, key_id, idem)
                raise
            if not slot.recorded:
                await self._finish(self.save, slot, encode(result))
            return result
        finally:
            del self._in_flight[slot_key]
            future.set_result(None)
