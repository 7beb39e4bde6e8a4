"""Actions whose commit must be known after a crash: the idempotent ones (their answer is replayed) and
the ones with webhook events (their events must be sent, and only theirs).

The shop's database and state.sqlite3 are two databases, with no transaction spanning both, so an action
is recorded around its commit like this (an "intent"):

1. The action's statements run in one transaction of the shop's database. Inside that same transaction
   the action leaves a trace that commits or rolls back with it: on PostgreSQL its transaction id
   (`txid_current()`, nothing written); on SQLite a row in the table `voka_bridge_ledger` (created in the
   shop's database the first time an idempotent or event-raising action runs, holding only random ids and
   times, pruned after a week).
2. Still before the commit, state.sqlite3 records the intent (its id, the owning process, the
   transaction id), the answer to replay (idempotency PREPARED) and the events (outbox `held`), synced
   to disk (so this holds through a power cut too, not only a killed process).
3. The shop's transaction commits.
4. state.sqlite3 records the outcome: the answer becomes the one replayed (DONE), the events become due.

A process that dies between 2 and 4 leaves the intent behind; at the next start (or at once, by another
worker or by a retry of the same idempotency key) it is settled by asking the shop's database: PostgreSQL
says whether the transaction committed (`txid_status`), SQLite whether the trace row exists. Committed:
step 4 is done then. Not committed: the answer and events are dropped and a retry runs the action. A
process that dies before 2 never committed (the commit comes after), so its claim is simply freed.
PostgreSQL may take a moment to decide a transaction whose client died while committing ("in
progress"): it is settled as soon as it is decided.

The one thing that cannot be settled is a trace that is gone: on PostgreSQL a transaction id so old that
the server no longer keeps its status (hundreds of millions of transactions later), or a database that
is not the one the intent was made in (the owner switched databases in between). Then the answer is
dropped and the events become dead letters with a reason, for the owner to judge and resend.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server import idempotency
from server.db.base import Database, Transaction
from server.errors import BridgeError
from server.idempotency import Slot
from server.liveness import ProcessLease
from server.webhooks import outbox

log = logging.getLogger(__name__)

TRACE_TABLE = "voka_bridge_ledger"
TRACE_KEEP = 7 * 86400.0     # seconds a SQLite trace row is kept (intents settle within seconds)
PRUNE_EVERY = 3600.0
DECIDE_WAIT = 10.0           # how long a settle waits for PostgreSQL to decide an "in progress" commit
SETTLE_EVERY = 5.0           # the background settler's pace (faster while a commit is being decided)
COMMITTED, ABORTED, UNKNOWN, UNDECIDED = "committed", "aborted", "unknown", "undecided"


@dataclass
class Intent:
    id: str
    database: str
    slot: Slot | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (webhook-id, event, body)
    txid: int | None = None


async def leave_trace(tx: Transaction, engine: str, intent: Intent, prune_before: float | None) -> None:
    """Step 1: the trace that commits or rolls back with the action's own transaction."""
    if engine == "postgresql":
        rows = await tx.execute("SELECT txid_current() AS xid", {})
        intent.txid = int(rows.rows[0]["xid"])
        return
    await tx.execute(f"CREATE TABLE IF NOT EXISTS {TRACE_TABLE} (id TEXT PRIMARY KEY, at REAL NOT NULL) "
                     "WITHOUT ROWID", {})
    await tx.execute(f"INSERT INTO {TRACE_TABLE} (id, at) VALUES (:id, :at)",
                     {"id": intent.id, "at": time.time()})
    if prune_before is not None:
        await tx.execute(f"DELETE FROM {TRACE_TABLE} WHERE at < :before", {"before": prune_before})


async def verdict(db: Database, database: str, txid: int | None, intent_id: str) -> str:
    """Did the intent's transaction commit? COMMITTED, ABORTED, UNDECIDED (PostgreSQL still deciding)
    or UNKNOWN (the trace is gone). Raises BridgeError when the database cannot be asked now."""
    if db.describe() != database:
        return UNKNOWN
    if db.engine == "postgresql":
        if txid is None:
            return UNKNOWN
        rows = await db.read("SELECT txid_status(:xid) AS status", {"xid": txid}, max_rows=1, timeout=5.0)
        status = rows.rows[0]["status"] if rows.rows else None
        return {"committed": COMMITTED, "aborted": ABORTED, "in progress": UNDECIDED}.get(status, UNKNOWN)
    # SQLite: read through the writer, so a commit of ours still queued on its thread is seen first
    async with db.transaction(timeout=5.0) as tx:
        table = await tx.execute(
            "SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name = :name",
            {"name": TRACE_TABLE})
        if not table.rows[0]["n"]:
            return ABORTED
        found = await tx.execute(f"SELECT 1 AS hit FROM {TRACE_TABLE} WHERE id = :id", {"id": intent_id})
    return COMMITTED if found.rows else ABORTED


class ActionLedger:
    """Runs tracked actions (steps 1-4 above) and settles the intents a dead or failed run left."""

    def __init__(self, conn: sqlite3.Connection, on_state: Callable[..., Awaitable[Any]], lease: ProcessLease,
                 database: Callable[[], Awaitable[Database]], max_age: Callable[[], float],
                 on_released: Callable[[], None] = lambda: None) -> None:
        """`max_age`: seconds a released event is retried ([webhooks] max_age_hours). `on_released` is
        called when events become due (to wake the delivery worker)."""
        self._conn = conn
        self._on_state = on_state
        self.lease = lease
        self._database = database
        self._max_age = max_age
        self._on_released = on_released
        self._active: set[str] = set()  # intents whose run() is still going (never settled from outside)
        self._settling: dict[str, asyncio.Task[bool]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._next_prune = 0.0

    # ---- state.sqlite3 (on the state thread) -----------------------------------------------------
    def _transaction(self, fn: Callable[[], Any]) -> Any:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return result

    def _prepare(self, intent: Intent, response: str | None) -> None:
        """Step 2."""
        def write() -> None:
            slot = intent.slot
            self._conn.execute(
                "INSERT INTO intents (id, owner, database, txid, key_id, idem_key, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (intent.id, self.lease.id, intent.database, intent.txid, slot.key_id if slot else None,
                 slot.idem if slot else None, time.time()))
            if slot is not None and response is not None:
                idempotency.mark_prepared(self._conn, slot, intent.id, response)
            if intent.events:
                outbox.hold(self._conn, intent.id, intent.events, time.time())

        # On disk before the COMMIT is sent, even through a power cut (state.sqlite3 otherwise syncs
        # lazily): whatever the shop's database then keeps or loses, the settle follows it.
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            self._transaction(write)
        finally:
            self._conn.execute("PRAGMA synchronous=NORMAL")

    def _conclude(self, intent_id: str, outcome: str) -> int:
        """Step 4 (COMMITTED), or its undoing (ABORTED), or dead letters (UNKNOWN). Released events."""
        def write() -> int:
            row = self._conn.execute("SELECT key_id, idem_key FROM intents WHERE id = ?",
                                     (intent_id,)).fetchone()
            if row is None:
                return 0  # settled already
            key_id, idem = row
            now = time.time()
            released = 0
            if outcome == COMMITTED:
                if key_id is not None:
                    idempotency.mark_done(self._conn, key_id, idem, intent_id)
                released = outbox.release(self._conn, intent_id, now, self._max_age())
            else:
                if key_id is not None:
                    idempotency.drop_prepared(self._conn, key_id, idem, intent_id)
                if outcome == UNKNOWN:
                    outbox.bury(self._conn, intent_id, now)
                else:
                    outbox.drop(self._conn, intent_id)
            self._conn.execute("DELETE FROM intents WHERE id = ?", (intent_id,))
            return released

        return int(self._transaction(write))

    def _conclude_orphan(self, intent_id: str) -> None:
        """An answer or events that name an intent no longer recorded. This code never leaves such rows
        (they change in one transaction with their intent); a damaged state file could: they are
        settled as UNKNOWN, so nothing waits on them for ever."""
        def write() -> None:
            self._conn.execute("DELETE FROM idempotency WHERE intent = ? AND status = ?",
                               (intent_id, idempotency.PREPARED))
            outbox.bury(self._conn, intent_id, time.time())

        self._transaction(write)

    def _intent_row(self, intent_id: str) -> tuple[str, str, int | None] | None:
        return self._conn.execute("SELECT owner, database, txid FROM intents WHERE id = ?",
                                  (intent_id,)).fetchone()

    def _oldest(self) -> float | None:
        row = self._conn.execute("SELECT min(created_at) FROM intents").fetchone()
        return None if row is None else row[0]

    # ---- running an action ---------------------------------------------------------------------
    def _shielded(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """A state write that runs to its end even when the request is cancelled meanwhile."""
        task = asyncio.ensure_future(self._on_state(fn, *args))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return asyncio.shield(task)

    async def _prune_before(self, engine: str) -> float | None:
        """Now and then (SQLite): the age below which trace rows may go. Never a trace an unsettled
        intent still needs."""
        now = time.time()
        if engine != "sqlite" or now < self._next_prune:
            return None
        self._next_prune = now + PRUNE_EVERY
        oldest = await self._on_state(self._oldest)
        return min(now - TRACE_KEEP, (oldest or now) - 1.0)

    async def run(self, db: Database, timeout: float, body: Callable[[Transaction], Awaitable[Any]], *,
                  slot: Slot | None, events: list[tuple[str, Callable[[Any], str]]],
                  encode: Callable[[Any], str]) -> Any:
        """Run `body` in one transaction of `db`, recorded as an intent. `events`: (name, body maker) for
        each event the action raises, given the action's result. Returns `body`'s result."""
        intent = Intent(uuid.uuid4().hex, db.describe(), slot)
        self._active.add(intent.id)
        prepared: asyncio.Future[Any] | None = None
        try:
            prune_before = await self._prune_before(db.engine)
            try:
                async with db.transaction(timeout=timeout) as tx:
                    result = await body(tx)
                    await leave_trace(tx, db.engine, intent, prune_before)
                    intent.events = [(outbox.new_id(), name, make(result)) for name, make in events]
                    prepared = self._shielded(self._prepare, intent, encode(result) if slot else None)
                    await prepared
            except BaseException as exc:
                if prepared is not None:  # the commit failed or was cut short: ask the database later
                    self._active.discard(intent.id)
                    self._settle_in_background(intent.id)
                    log.warning("an action's commit is unconfirmed; settling it", extra={"fields": {
                        "intent": intent.id, "error": type(exc).__name__}})
                raise
            released = await self._shielded(self._conclude, intent.id, COMMITTED)
            if slot is not None:
                slot.recorded = True
            if released:
                self._on_released()
            return result
        finally:
            self._active.discard(intent.id)

    # ---- settling ------------------------------------------------------------------------------
    def _settle_in_background(self, intent_id: str) -> None:
        task = asyncio.ensure_future(self._settle_quietly(intent_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _settle_quietly(self, intent_id: str) -> None:
        try:
            await self.settle(intent_id)
        except Exception:
            log.exception("settling an action failed; the background settler tries again")

    async def settle(self, intent_id: str, *, wait: float = DECIDE_WAIT) -> bool:
        """Settle one intent left by a run that is over (its process died, or its commit failed). True
        when it is settled (or nobody needs to: already settled, or its run is still going elsewhere);
        False when the database could not tell yet. One settle per intent at a time."""
        running = self._settling.get(intent_id)
        if running is None:
            running = asyncio.ensure_future(self._settle(intent_id, wait))
            self._settling[intent_id] = running
            running.add_done_callback(lambda _: self._settling.pop(intent_id, None))
        return await asyncio.shield(running)

    async def _settle(self, intent_id: str, wait: float) -> bool:
        row = await self._on_state(self._intent_row, intent_id)
        if row is None:  # settled already (or its record was damaged: then nobody can tell)
            await self._on_state(self._conclude_orphan, intent_id)
            return True
        owner, database, txid = row
        if intent_id in self._active or (owner != self.lease.id and self.lease.alive(owner)):
            return True  # its run is going on; it records the outcome itself
        try:
            db = await self._database()
            deadline = time.monotonic() + wait
            while (found := await verdict(db, database, txid, intent_id)) == UNDECIDED:
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.1)
        except BridgeError as exc:
            log.warning("cannot settle an action now; will try again", extra={"fields": {
                "intent": intent_id, "error": exc.message}})
            return False
        released = await self._on_state(self._conclude, intent_id, found)
        (log.error if found == UNKNOWN else log.info)("settled an action left unconfirmed", extra={"fields": {
            "intent": intent_id, "outcome": found, "events_released": released}})
        if released:
            self._on_released()
        return True

    def _abandoned(self) -> list[str]:
        """Intents whose run is over: their owner died, or they are ours and no run holds them. Also
        frees PENDING idempotency claims of dead processes (they never reached a commit)."""
        freed = idempotency.drop_dead_claims(self._conn, self.lease)
        if freed:
            log.info("freed idempotency keys left pending by a stopped process", extra={"fields": {
                "keys": freed}})
        rows = self._conn.execute("SELECT id, owner FROM intents").fetchall()
        return [intent_id for intent_id, owner in rows
                if intent_id not in self._active
                and (owner == self.lease.id or not self.lease.alive(owner))]

    async def settle_abandoned(self, *, wait: float = 0.0) -> int:
        """Settle everything dead or failed runs left (at start, then now and then). How many remain."""
        left = 0
        for intent_id in await self._on_state(self._abandoned):
            if not await self.settle(intent_id, wait=wait):
                left += 1
        if not left:
            owners = await self._on_state(self._owners_in_use)
            for owner in self.lease.dead_owners():
                if owner not in owners:
                    self.lease.forget(owner)
        return left

    def _owners_in_use(self) -> set[str]:
        rows = self._conn.execute("SELECT owner FROM intents UNION SELECT owner FROM idempotency "
                                  "WHERE status != ? AND owner IS NOT NULL", (idempotency.DONE,)).fetchall()
        return {owner for (owner,) in rows}

    async def run_settler(self) -> None:
        """Background task: settle what could not be settled at once (a database that was down, a commit
        PostgreSQL had not decided yet), and prune old answers."""
        next_prune = 0.0
        while True:
            try:
                left = await self.settle_abandoned(wait=0.0)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    await self._on_state(self._prune_state)
            except Exception:
                log.exception("settling unconfirmed actions failed")
                left = 1
            await asyncio.sleep(0.2 if left else SETTLE_EVERY)

    def _prune_state(self) -> None:
        idempotency.prune(self._conn)
        outbox.prune(self._conn, time.time())

    async def close(self) -> None:
        """Let shielded writes and settles finish (the state connection closes after this)."""
        pending = [task for task in self._background if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=10.0)

