"""state.sqlite3: key metadata, the audit log, idempotency records, the webhook outbox and, with several
workers, the MCP sessions they share (never a secret).

Plain sqlite3 so the CLI can use it synchronously; the server runs these calls on one dedicated thread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 3

_MIGRATIONS = [
    """
    CREATE TABLE keys (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE,
        hash           TEXT NOT NULL,
        scopes         TEXT NOT NULL,
        tools          TEXT,
        rate_limit     INTEGER,
        created_at     TEXT NOT NULL,
        expires_at     TEXT,
        last_used_at   TEXT,
        use_count      INTEGER NOT NULL DEFAULT 0,
        revoked_at     TEXT,
        old_hash       TEXT,
        old_expires_at TEXT
    );
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY,
        ts          TEXT NOT NULL,
        key_id      TEXT,
        key_name    TEXT,
        client      TEXT,
        method      TEXT NOT NULL,
        route       TEXT NOT NULL,
        protocol    TEXT,
        tool        TEXT,
        status      INTEGER NOT NULL,
        duration_ms REAL NOT NULL,
        rows        INTEGER,
        error_code  TEXT,
        detail      TEXT
    );
    CREATE INDEX audit_ts ON audit(ts);
    CREATE TABLE idempotency (
        key_id      TEXT NOT NULL,
        idem_key    TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status      INTEGER NOT NULL,
        response    TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (key_id, idem_key)
    );
    """,
    """
    CREATE TABLE mcp_sessions (
        id          TEXT PRIMARY KEY,
        key_id      TEXT NOT NULL,
        version     TEXT NOT NULL,
        client_info TEXT NOT NULL,
        initialized INTEGER NOT NULL DEFAULT 0,
        last_used   REAL NOT NULL,
        held_until  REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX mcp_sessions_key ON mcp_sessions(key_id, last_used);
    """,
    # Actions whose commit must be known after a crash (server/ledger.py), the process holding an
    # idempotency claim (server/liveness.py), and the webhook outbox (server/webhooks/outbox.py).
    """
    ALTER TABLE idempotency ADD COLUMN owner TEXT;
    ALTER TABLE idempotency ADD COLUMN intent TEXT;
    CREATE TABLE intents (
        id         TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        database   TEXT NOT NULL,
        txid       INTEGER,
        key_id     TEXT,
        idem_key   TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE webhook_outbox (
        id           TEXT PRIMARY KEY,
        event        TEXT NOT NULL,
        body         TEXT NOT NULL,
        status       TEXT NOT NULL,
        intent       TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        next_at      REAL NOT NULL,
        lease_until  REAL NOT NULL DEFAULT 0,
        last_error   TEXT,
        last_status  INTEGER,
        finished_at  REAL
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox(status, next_at);
    CREATE INDEX webhook_outbox_intent ON webhook_outbox(intent)
    """,
]


def connect_state(path: Path) -> sqlite3.Connection:
    """Open (creating and migrating as needed) the state database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _owner_only(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    _set_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] < len(_MIGRATIONS):
        _migrate(conn)
    return conn


def _owner_only(path: Path) -> None:
    """Key hashes and the audit log are the owner's alone: the file is made 0600 before SQLite opens it
    (SQLite gives its -wal and -shm files the same permissions), or made so again by path.

    Never by opening an existing file: SQLite's locks are POSIX locks, which a process loses on a file
    when it closes any descriptor of it, so closing one here would take the locks of this process's open
    connections (another process could then delete the write-ahead log under them)."""
    if os.name != "posix":
        return  # Windows: the per-user profile folder's ACL already keeps other users out
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # new: nobody holds locks
        return
    except FileExistsError:
        pass
    except OSError:
        return  # SQLite will say what is wrong with the path
    with contextlib.suppress(OSError):  # SQLite will say what is wrong with the path
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)


def _set_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switching a new file to WAL takes an exclusive lock that SQLite will not wait for (it answers
    "locked" at once while another connection holds the file), so retry briefly."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply pending migrations under one write lock, re-reading the version inside it: two threads or
    processes opening a new state file at once must not both create its tables."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            for statement in filter(None, (part.strip() for part in script.split(";"))):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when another connection (say, `voka-bridge keys revoke`) commits to the file."""
    return conn.execute("PRAGMA data_version").fetchone()[0]
