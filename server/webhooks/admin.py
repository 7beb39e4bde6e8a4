"""The webhook outbox for the owner (`voka-bridge webhooks`, the desktop app's dead letters): blocking
calls, one short state.sqlite3 connection each, meant for a worker thread. A running server sees a
resend within a second (its worker looks at the outbox that often)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from server.paths import Paths
from server.state import connect_state
from server.webhooks import outbox


@dataclass(frozen=True)
class Row:
    """One message as the owner sees it."""

    id: str
    event: str
    status: str
    attempts: int
    created: str  # UTC, to the second
    detail: str   # why it is dead, when the next try is, or when it was delivered


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def describe(message: outbox.Message) -> str:
    """What the owner needs to know about a message's state, in a few words."""
    if message.status == outbox.PENDING:
        error = f"; {message.last_error}" if message.last_error else ""
        return f"next try {when(message.next_at)}{error}"
    if message.status == outbox.DELIVERED:
        return f"delivered {when(message.finished_at)} (HTTP {message.last_status})"
    if message.status == outbox.HELD:
        return "waiting for its action's commit to be confirmed"
    return message.last_error or "dead letter"


def row(message: outbox.Message) -> Row:
    return Row(message.id, message.event, message.status, message.attempts, when(message.created_at),
               describe(message))


@contextmanager
def _state(paths: Paths) -> Iterator[sqlite3.Connection]:
    paths.ensure()
    conn = connect_state(paths.state_db)
    try:
        yield conn
    finally:
        conn.close()


def messages(paths: Paths, statuses: Sequence[str] = (outbox.DEAD,)) -> list[Row]:
    """Messages in the given states, oldest first (dead letters by default)."""
    with _state(paths) as conn:
        return [row(message) for message in outbox.listing(conn, statuses)]


def resend(paths: Paths, message_id: str, max_age_hours: float) -> Row:
    """Queue a dead letter again (see outbox.resend); LookupError / ValueError say why not."""
    with _state(paths) as conn:
        return row(outbox.resend(conn, message_id, max_age_hours * 3600.0))
