"""The webhook outbox in state.sqlite3: every event from the moment its action is about to commit until
Voka has it (or it is a dead letter).

A message's life: `held` (written just before its action commits, tied to the action's intent; it is
never sent while held) → `pending` (the commit is confirmed; due at `next_at`, retried until
`expires_at`) → `delivered`, or `dead` (a dead letter: still failing at `expires_at`, or its action's
commit could not be confirmed). A dead letter goes back to `pending` with `resend`. The body is built
once, so every attempt sends the same bytes under the same `webhook-id`.

Plain functions over a connection; the ledger calls the `hold`/`release`/`drop`/`bury` ones inside its
own state transactions, the worker and the CLI the rest.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.jsonsafe import dumps

HELD, PENDING, DELIVERED, DEAD = "held", "pending", "delivered", "dead"
KEEP_DELIVERED = 7 * 86400.0  # seconds a delivered message stays listed
KEEP_DEAD = 30 * 86400.0      # seconds a dead letter waits for a resend before it is removed
UNCONFIRMED = ("the action's commit could not be confirmed (the process stopped and the database no longer "
               "says); resend it if the action did happen")
_COLUMNS = ("id, event, body, status, attempts, created_at, expires_at, next_at, last_error, last_status, "
            "finished_at")


@dataclass(frozen=True)
class Message:
    id: str
    event: str
    body: str
    status: str
    attempts: int
    created_at: float
    expires_at: float
    next_at: float
    last_error: str | None
    last_status: int | None
    finished_at: float | None


def new_id() -> str:
    """A `webhook-id`: unique, and the same on every attempt (receivers use it to drop duplicates)."""
    return "msg_" + uuid.uuid4().hex


def body_for(event: str, data: Any, when: dt.datetime) -> str:
    """What Voka receives: `{"event", "data", "timestamp"}` (the time the action ran, ISO 8601)."""
    return dumps({"event": event, "data": data,
                  "timestamp": when.astimezone(dt.UTC).isoformat(timespec="milliseconds")})


def _rows(cursor: sqlite3.Cursor) -> list[Message]:
    return [Message(*row) for row in cursor.fetchall()]


# ---- in step with an action's commit (inside the ledger's state transactions) ---------------------
def hold(conn: sqlite3.Connection, intent: str, messages: Iterable[tuple[str, str, str]], now: float) -> None:
    """Write (id, event, body) messages for an action that is about to commit; none is sent yet."""
    conn.executemany(
        "INSERT INTO webhook_outbox (id, event, body, status, intent, created_at, expires_at, next_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(message_id, event, body, HELD, intent, now, now, now) for message_id, event, body in messages])


def release(conn: sqlite3.Connection, intent: str, now: float, max_age: float) -> int:
    """The action committed: its messages are due now and retried for `max_age` seconds."""
    return conn.execute(
        "UPDATE webhook_outbox SET status = ?, intent = NULL, next_at = ?, expires_at = ? "
        "WHERE intent = ? AND status = ?", (PENDING, now, now + max_age, intent, HELD)).rowcount


def drop(conn: sqlite3.Connection, intent: str) -> int:
    """The action rolled back: its messages never existed."""
    return conn.execute("DELETE FROM webhook_outbox WHERE intent = ? AND status = ?",
                        (intent, HELD)).rowcount


def bury(conn: sqlite3.Connection, intent: str, now: float, reason: str = UNCONFIRMED) -> int:
    """Nobody can tell whether the action committed: its messages become dead letters for the owner to
    judge (and resend), rather than being sent for something that may not have happened or lost."""
    return conn.execute(
        "UPDATE webhook_outbox SET status = ?, intent = NULL, last_error = ?, finished_at = ? "
        "WHERE intent = ? AND status = ?", (DEAD, reason, now, intent, HELD)).rowcount


# ---- the delivery worker -------------------------------------------------------------------------
def claim_due(conn: sqlite3.Connection, now: float, lease: float, limit: int) -> list[Message]:
    """Messages due now, leased for `lease` seconds so no other worker sends them meanwhile."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        due = _rows(conn.execute(
            f"SELECT {_COLUMNS} FROM webhook_outbox WHERE status = ? AND next_at <= ? AND lease_until <= ? "
            "ORDER BY next_at LIMIT ?", (PENDING, now, now, limit)))
        conn.executemany("UPDATE webhook_outbox SET lease_until = ? WHERE id = ?",
                         [(now + lease, message.id) for message in due])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return due


def next_due(conn: sqlite3.Connection) -> float | None:
    """When the earliest pending message is due (None: nothing to send)."""
    row = conn.execute("SELECT min(max(next_at, lease_until)) FROM webhook_outbox WHERE status = ?",
                       (PENDING,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def delivered(conn: sqlite3.Connection, message_id: str, status: int, now: float) -> None:
    conn.execute(
        "UPDATE webhook_outbox SET status = ?, attempts = attempts + 1, last_status = ?, last_error = NULL, "
        "finished_at = ?, lease_until = 0 WHERE id = ? AND status = ?",
        (DELIVERED, status, now, message_id, PENDING))


def failed(conn: sqlite3.Connection, message_id: str, error: str, status: int | None, now: float,
           delay: float) -> tuple[bool, float]:
    """Count a failed attempt. (dead, next attempt time): the message is retried after `delay`, but never
    after its `expires_at`; an attempt that fails at or past that time makes it a dead letter."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT expires_at FROM webhook_outbox WHERE id = ? AND status = ?",
                           (message_id, PENDING)).fetchone()
        if row is None:  # resent or removed meanwhile
            conn.execute("COMMIT")
            return False, now
        dead = now >= row[0]
        next_at = now if dead else min(now + delay, row[0])
        conn.execute(
            "UPDATE webhook_outbox SET status = ?, attempts = attempts + 1, last_error = ?, last_status = ?, "
            "next_at = ?, lease_until = 0, finished_at = ? WHERE id = ?",
            (DEAD if dead else PENDING, error[:500], status, next_at, now if dead else None, message_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return dead, next_at


def prune(conn: sqlite3.Connection, now: float) -> int:
    return conn.execute(
        "DELETE FROM webhook_outbox "
        "WHERE (status = ? AND finished_at < ?) OR (status = ? AND finished_at < ?)",
        (DELIVERED, now - KEEP_DELIVERED, DEAD, now - KEEP_DEAD)).rowcount


# ---- the owner: `voka-bridge webhooks`, the app -----------------------------------------------------
def listing(conn: sqlite3.Connection, statuses: Iterable[str] = (HELD, PENDING, DEAD),
            limit: int = 500) -> list[Message]:
    wanted = list(statuses)
    marks = ", ".join("?" for _ in wanted)
    return _rows(conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_outbox WHERE status IN ({marks}) ORDER BY created_at, id LIMIT ?",
        (*wanted, limit)))


def find(conn: sqlite3.Connection, id_or_prefix: str) -> Message:
    """One message by its id or an unambiguous start of it; LookupError saying why not."""
    text = id_or_prefix.strip()
    if not text:
        raise LookupError("give the id of a webhook message (see `voka-bridge webhooks list`)")
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    found = _rows(conn.execute(f"SELECT {_COLUMNS} FROM webhook_outbox WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                               (pattern,)))
    if not found:
        raise LookupError(f"there is no webhook message {text!r} (see `voka-bridge webhooks list`)")
    if len(found) > 1:
        raise LookupError(f"{text!r} starts more than one message id; give more of it")
    return found[0]


def resend(conn: sqlite3.Connection, id_or_prefix: str, max_age: float, now: float | None = None) -> Message:
    """Send a dead (or delivered) message again, under the same webhook-id, retried for `max_age` seconds
    from now. A pending one is made due now. LookupError when there is no such message; ValueError for
    a message whose action is not yet confirmed."""
    now = time.time() if now is None else now
    conn.execute("BEGIN IMMEDIATE")
    try:
        message = find(conn, id_or_prefix)
        if message.status == HELD:
            raise ValueError(f"{message.id} waits for its action's commit to be confirmed; "
                             "it cannot be sent yet")
        conn.execute(
            "UPDATE webhook_outbox SET status = ?, next_at = ?, expires_at = ?, lease_until = 0, "
            "finished_at = NULL WHERE id = ?", (PENDING, now, max(now + max_age, now + 60), message.id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return find(conn, message.id)


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM webhook_outbox GROUP BY status").fetchall())
