"""SQLite backend: WAL, one serialized writer, a pool of read-only readers.

Raw SQL is made read-only by SQLite itself: readers open the file with mode=ro, set query_only, and an
authorizer refuses every write, ATTACH, PRAGMA and extension loading. A progress handler enforces the
time limit, so a runaway query is interrupted inside the engine rather than abandoned.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from server.db.base import Column, Database, Params, Rows, Table
from server.errors import (
    BadRequest,
    BridgeError,
    Conflict,
    DatabaseUnavailable,
    InternalError,
    QueryTimeout,
    ReadOnlyViolation,
)
from server.handoff import Handoff

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                    getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
_FORBIDDEN_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_PROGRESS_STEPS = 2000
INLINE_BUDGET = 0.002  # seconds a read may hold the event loop before it moves to a worker thread
log = logging.getLogger(__name__)


def _read_only_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None,
                          _trigger: str | None) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _FORBIDDEN_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _needs_more_time(exc: sqlite3.OperationalError, timeout: float) -> bool:
    """Interrupted by the inline budget (not the caller's limit), or the file was briefly locked."""
    message = str(exc)
    return timeout > INLINE_BUDGET and (message == "interrupted" or "locked" in message or "busy" in message)


class _Deadline:
    """Progress-handler target: interrupts the statement once the monotonic deadline has passed."""

    def __init__(self) -> None:
        self.at = float("inf")

    def __call__(self) -> int:
        return 1 if time.monotonic() > self.at else 0

    def expired(self) -> bool:
        return time.monotonic() > self.at


def sqlite_path(url: str, base: Path) -> Path:
    """`sqlite:///abs/path`, `sqlite:///C:/path` or `sqlite:relative/path` (relative to the config dir)."""
    rest = url.removeprefix("sqlite:")
    rest = rest.removeprefix("//")
    if re.match(r"^/[A-Za-z]:[/\\]", rest):
        rest = rest[1:]
    path = Path(rest).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _bindable(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def _bind(params: Params) -> dict[str, Any]:
    if isinstance(params, list):  # raw SQL: $1, $2 ... are named "1", "2" to SQLite
        return {str(i): _bindable(v) for i, v in enumerate(params, start=1)}
    return {k: _bindable(v) for k, v in params.items()}


def _constraint_message(message: str) -> str:
    if message.startswith("UNIQUE constraint failed:"):
        columns = message.split(":", 1)[1].strip()
        return f"A record with the same {columns} already exists."
    if "FOREIGN KEY constraint failed" in message:
        return "This refers to a record that does not exist."
    if message.startswith("CHECK constraint failed"):
        return "The change breaks a rule of the database (" + message.split(":", 1)[-1].strip() + ")."
    if message.startswith("NOT NULL constraint failed:"):
        return f"A required value is missing: {message.split(':', 1)[1].strip()}."
    return "The change conflicts with the data in the database."


def _fetch(conn: sqlite3.Connection, sql: str, params: dict[str, Any], limit: int
           ) -> tuple[list[tuple[Any, ...]], list[str]]:
    """At most `limit` rows, never the whole result."""
    cursor = conn.execute(sql, params)
    try:
        return cursor.fetchmany(limit), [d[0] for d in cursor.description or ()]
    finally:
        cursor.close()


def _fetch_patiently(conn: sqlite3.Connection, deadline: _Deadline, sql: str, params: dict[str, Any],
                     limit: int) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The worker-thread path: like _fetch, but waits out a briefly locked file until the deadline."""
    while True:
        try:
            return _fetch(conn, sql, params, limit)
        except sqlite3.OperationalError as exc:
            locked = "locked" in str(exc) or "busy" in str(exc)
            if not locked or deadline.expired():
                raise
            time.sleep(0.005)


_Reader = tuple[sqlite3.Connection, _Deadline]


def _open_reader(path: Path) -> _Reader:
    """A read-only connection: mode=ro, query_only, the authorizer, and a deadline-checking handler.

    busy_timeout stays 0 so a read tried on the event loop never sleeps there; the worker path waits.
    """
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA query_only=ON")
    conn.set_authorizer(_read_only_authorizer)
    deadline = _Deadline()
    conn.set_progress_handler(deadline, _PROGRESS_STEPS)
    return conn, deadline


class SqliteDatabase(Database):
    engine = "sqlite"

    def __init__(self, path: Path, *, readers: int = 4, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._readers_wanted = readers
        self._busy_ms = int(busy_timeout * 1000)
        self._writer: aiosqlite.Connection | None = None
        self._writer_deadline = _Deadline()
        self._write_lock = asyncio.Lock()
        # free readers, and the reads waiting for one (asyncio.Queue's bookkeeping cost more than the
        # point lookup it guarded)
        self._idle: list[_Reader] = []
        self._waiting: Handoff[_Reader] = Handoff()
        self._readers: list[sqlite3.Connection] = []
        self._read_threads: ThreadPoolExecutor | None = None

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    async def open(self) -> None:
        if not self.path.is_file():
            raise DatabaseUnavailable(f"The SQLite file {self.path} does not exist.")
        try:
            self._writer = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in ("journal_mode=WAL", f"busy_timeout={self._busy_ms}", "foreign_keys=ON",
                           "synchronous=NORMAL"):
                await self._writer.execute(f"PRAGMA {pragma}")
            await self._writer.set_progress_handler(self._writer_deadline, _PROGRESS_STEPS)
            self._read_threads = ThreadPoolExecutor(self._readers_wanted, thread_name_prefix="sqlite-read")
            for _ in range(self._readers_wanted):
                reader, deadline = _open_reader(self.path)
                self._readers.append(reader)
                self._idle.append((reader, deadline))
        except sqlite3.Error as exc:
            await self.close()
            raise DatabaseUnavailable(f"Cannot open the SQLite file {self.path}: {exc}") from None

    async def close(self) -> None:
        if self._read_threads is not None:
            self._read_threads.shutdown(wait=True)
            self._read_threads = None
        for reader in self._readers:
            with suppress(sqlite3.Error):
                reader.close()
        self._readers.clear()
        self._idle = []
        self._waiting.fail(lambda: DatabaseUnavailable("The database was closed."))
        if self._writer is not None:
            with suppress(sqlite3.Error, ValueError):
                await self._writer.close()
        self._writer = None

    async def ping(self) -> None:
        if not self.path.is_file():
            raise DatabaseUnavailable(f"The SQLite file {self.path} is missing.")
        await self.read("SELECT 1", {}, max_rows=1, timeout=2.0)

    async def read(self, sql: str, params: Params, *, max_rows: int, timeout: float,
                   raw: bool = False) -> Rows:
        """Try the read on the event loop for at most INLINE_BUDGET (a point lookup takes microseconds,
        and skipping the thread hop avoids GIL hand-offs that dominate latency under load); a read that
        needs longer is interrupted by SQLite and run again on a worker thread under the full limit.
        Reads change nothing, so running one again is safe."""
        if not self._readers or self._read_threads is None:
            raise DatabaseUnavailable("The database is not open.")
        # a reader is nearly always free (reads on the event loop return theirs at once)
        conn, deadline = self._idle.pop() if self._idle else await self._waiting.wait(self._give_back)
        started = time.monotonic()
        bound = _bind(params)
        try:
            deadline.at = started + min(timeout, INLINE_BUDGET)
            try:
                fetched, columns = _fetch(conn, sql, bound, max_rows + 1)
            except sqlite3.OperationalError as exc:
                if not _needs_more_time(exc, timeout):
                    raise
                deadline.at = started + timeout
                fetched, columns = await self._on_worker(conn, deadline, sql, bound, max_rows + 1)
        except sqlite3.Error as exc:
            raise self._translate(exc, deadline, raw) from None
        finally:
            deadline.at = float("inf")
            self._give_back((conn, deadline))
        truncated = len(fetched) > max_rows
        return Rows(columns, [dict(zip(columns, row, strict=False)) for row in fetched[:max_rows]], truncated)

    def _give_back(self, reader: _Reader) -> None:
        if not self._waiting.give(reader):
            self._idle.append(reader)

    async def _on_worker(self, conn: sqlite3.Connection, deadline: _Deadline, sql: str,
                         bound: dict[str, Any], limit: int) -> tuple[list[tuple[Any, ...]], list[str]]:
        """Run on a worker thread; a cancelled caller interrupts the statement and waits for the
        thread to let go of the connection before it goes back to the pool."""
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._read_threads, _fetch_patiently, conn, deadline, sql, bound, limit)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            conn.interrupt()
            with suppress(sqlite3.Error):
                await work
            raise

    @asynccontextmanager
    async def transaction(self, *, timeout: float) -> AsyncIterator[_SqliteTransaction]:
        if self._writer is None:
            raise DatabaseUnavailable("The database is not open.")
        async with self._write_lock:
            writer = self._writer
            self._writer_deadline.at = time.monotonic() + timeout
            try:
                await writer.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTransaction(writer)
                except BaseException:
                    await writer.execute("ROLLBACK")
                    raise
                await writer.execute("COMMIT")
            except sqlite3.Error as exc:
                if writer.in_transaction:
                    await writer.execute("ROLLBACK")
                raise self._translate(exc, self._writer_deadline, raw=False) from None
            finally:
                self._writer_deadline.at = float("inf")

    async def schema(self) -> list[Table]:
        if self._writer is None:
            raise DatabaseUnavailable("The database is not open.")
        tables: list[Table] = []
        async with self._write_lock:
            names = await self._writer.execute_fetchall(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name")
            for (name,) in names:
                info = await self._writer.execute_fetchall(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)", (name,))
                count = await self._writer.execute_fetchall(
                    f'SELECT COUNT(*) FROM "{name.replace(chr(34), chr(34) * 2)}"')
                tables.append(Table(name, [Column(c[0], c[1] or "ANY", not c[2], bool(c[3])) for c in info],
                                    next(iter(count))[0]))
        return tables

    def _translate(self, exc: sqlite3.Error, deadline: _Deadline, raw: bool) -> BridgeError:
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and message == "interrupted" and deadline.expired():
            return QueryTimeout("The query took too long and was stopped.")
        if isinstance(exc, sqlite3.IntegrityError):
            return Conflict(_constraint_message(message), code="constraint_violation")
        if any(text in message for text in ("not authorized", "authorization denied", "readonly database")):
            return ReadOnlyViolation("Only reading is allowed here: this statement would change the "
                                     "database or its settings.")
        if "database is locked" in message or "unable to open" in message or "disk I/O" in message:
            return DatabaseUnavailable("The database is busy or unavailable; try again shortly.")
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement at a time" in message:
            return BadRequest("Send one SQL statement at a time.", code="multiple_statements")
        if raw and isinstance(exc, sqlite3.ProgrammingError | sqlite3.OperationalError):
            return BadRequest(f"The SQL was not accepted: {message}", code="sql_error")
        if raw and isinstance(exc, sqlite3.InterfaceError):
            return BadRequest(f"The SQL arguments were not accepted: {message}", code="sql_error")
        log.error("database error in a catalog tool", extra={"fields": {"error": message}})
        return InternalError("The tool failed inside the database; the owner can see why in the log.",
                             code="tool_failed")


class _SqliteTransaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: dict[str, Any]) -> Rows:
        async with self._conn.execute(sql, _bind(params)) as cursor:
            fetched = await cursor.fetchall()
            columns = [d[0] for d in cursor.description or ()]
            changes = cursor.rowcount
        return Rows(columns, [dict(zip(columns, row, strict=False)) for row in fetched], changes=changes)
