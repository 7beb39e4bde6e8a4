"""SQLite backend: WAL, one serialized writer, a pool of read-only readers.

Raw SQL is made read-only by SQLite itself: readers open the file with mode=ro, set query_only, and an
authorizer refuses every write, ATTACH, PRAGMA and extension loading.

A read is tried on the event loop for at most INLINE_BUDGET (a point lookup takes microseconds, and
a hop to a thread costs more than the lookup) and moves to a reader thread when it needs longer; there
a timer on the loop calls `Connection.interrupt()` at the time limit. The progress handler that holds a
read to its budget runs only between SQLite's instructions, and one instruction can be a 100 MB string
operation, so reads on the loop run under limits that keep every instruction short (values and SQL of
at most 4 KB, short LIKE patterns; a statement that needs more moves to a thread at once). A caller's
raw SQL is also watched by a thread that interrupts it 15 to 40 ms after it began
(server/db/watchdog.py), and is not tried on the loop at all on a file with virtual tables. One API key
holds up to half the readers, and more only while one is left free for other keys
(server.handoff.Shares); /health has a connection of its own. So neither a slow statement nor one key's
flood of them holds up anyone else.

Answers are bounded: SQLITE_LIMIT_LENGTH on the readers makes SQLite itself refuse any value (in the
answer or on the way to it) larger than the answer may be, and rows are counted as they arrive
(server.db.budget), so an oversized answer stops at the first row past the limit. A lookup on the loop,
whose few values are at most 4 KB each, is too small to need counting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

from server.db.base import Column, Database, Params, Rows, Table, call_owner
from server.db.budget import AnswerBudget, rows_size
from server.db.engine_messages import refusal
from server.db.watchdog import Watchdog
from server.errors import (
    BadRequest,
    BridgeError,
    Conflict,
    DatabaseUnavailable,
    InternalError,
    QueryTimeout,
    ReadOnlyViolation,
    ResponseTooLarge,
)
from server.handoff import Handoff, Shares
from server.logs import redact
from server.sqlparams import named_params

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                    getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
_FORBIDDEN_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_PROGRESS_STEPS = 2000
INLINE_BUDGET = 0.002  # seconds a catalog read may hold the event loop before it moves to a worker thread
# SQLITE_LIMIT_LENGTH never below this (it also bounds SQL text and bound values: 20,000 characters of
# SQL may take 80,000 bytes), nor above SQLite's own maximum.
_MIN_VALUE_LIMIT = 128 * 1024
_ON_LOOP = -1  # _Reader.limited_for while set for a read on the event loop
_LOOP_VALUES = 4096
_LOOP_LIKE = 64
# a raw read on the event loop that is still running this long after it began is interrupted by the
# watchdog thread (a single instruction the progress handler cannot reach), then run on a worker thread
_RAW_INLINE_CUTOFF = 0.015
_FEW_ROWS = 4  # reads of at most this many rows are fetched at once and counted after
log = logging.getLogger(__name__)


def _read_only_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None,
                          _trigger: str | None) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _FORBIDDEN_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _over_loop_limits(exc: sqlite3.Error) -> bool:
    """A read refused only by the tighter limits of the event loop (_Reader.limit_for_loop)."""
    return (getattr(exc, "sqlite_errorname", "") == "SQLITE_TOOBIG"
            or "pattern too complex" in str(exc))


def _needs_more_time(exc: sqlite3.Error, timeout: float) -> bool:
    """Interrupted by the inline budget (not the caller's limit), or the file was briefly locked."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
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


def _time_is_up(conn: sqlite3.Connection, deadline: _Deadline) -> None:
    """The loop timer at a worker read's limit: mark the deadline passed (so "interrupted" reads as a
    timeout, and the progress handler stops the statement too), then interrupt SQLite wherever it is.
    Thread-safe, and a no-op on a connection with no statement running."""
    deadline.at = float("-inf")
    conn.interrupt()


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


def _fetch(conn: sqlite3.Connection, sql: str, params: dict[str, Any], max_rows: int, max_bytes: int | None,
           value_cap: int | None = None) -> Rows:
    """At most `max_rows` rows (and one more, to tell a truncated answer), never the whole result; with
    `max_bytes`, counted as they arrive and refused (ResponseTooLarge) at the first row that takes the
    answer past it. `value_cap`: no value is longer (the loop's SQLITE_LIMIT_LENGTH), so a lookup's few
    values need no counting (budget.rows_size)."""
    cursor = conn.execute(sql, params)
    try:
        columns = [d[0] for d in cursor.description or ()]
        limit = max_rows + 1
        if max_bytes is None:
            rows, size = cursor.fetchmany(limit), 0
        else:
            # A lookup's few rows are fetched at once, then counted (each value is capped anyway); only
            # an answer with more rows than that is counted row by row as the rest arrives.
            rows = cursor.fetchmany(min(limit, _FEW_ROWS))
            if len(rows) < _FEW_ROWS or limit <= _FEW_ROWS:
                size = rows_size(columns, rows[:max_rows], max_bytes, value_cap)
            else:
                size = _count_the_rest(cursor, rows, columns, limit, max_bytes)
    finally:
        cursor.close()
    truncated = len(rows) > max_rows
    sent = rows[:max_rows] if truncated else rows
    return Rows(columns, [dict(zip(columns, row, strict=False)) for row in sent], truncated, size=size)


def _count_the_rest(cursor: sqlite3.Cursor, rows: list[tuple[Any, ...]], columns: list[str], limit: int,
                    max_bytes: int) -> int:
    """Fetch up to `limit` rows into `rows` (which holds the first few), each counted as it arrives but
    the extra one that only tells truncation; their size."""
    budget = AnswerBudget(max_bytes, columns)
    add = budget.add
    for row in rows:
        add(row)
    counted = limit - 1
    for row in cursor:
        if len(rows) < counted:
            add(row)
        rows.append(row)
        if len(rows) >= limit:
            break
    return budget.used


def _fetch_patiently(conn: sqlite3.Connection, deadline: _Deadline, sql: str, params: dict[str, Any],
                     max_rows: int, max_bytes: int | None) -> Rows:
    """The worker-thread path: like _fetch, but waits out a briefly locked file until the deadline."""
    while True:
        try:
            return _fetch(conn, sql, params, max_rows, max_bytes)
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if deadline.expired():
                raise
            if message == "interrupted":  # the watchdog's, meant for the inline read before this one
                continue
            if "locked" not in message and "busy" not in message:
                raise
            time.sleep(0.005)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_EXPLAINED = re.compile(r"\s*EXPLAIN\b", re.IGNORECASE)


def _prepare_only(path: Path, sql: str, writes: bool, busy_ms: int) -> str | None:
    """Compile `sql` as its tool will run it, and run nothing: EXPLAIN only lists the compiled program.
    The connection is read-only besides (mode=ro, query_only), so not even a mistake here could change
    the file. A read is compiled under the readers' authorizer, as it runs for Voka; an action's step
    as on the writer. None when it compiles, else SQLite's message; DatabaseUnavailable when the file
    cannot be read at all."""
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(f"Cannot open the SQLite file {path}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        conn.execute("PRAGMA query_only=ON")
        if not writes:
            conn.set_authorizer(_read_only_authorizer)
        listing = sql if _EXPLAINED.match(sql) else "EXPLAIN " + sql  # EXPLAIN EXPLAIN is no statement
        conn.execute(listing, dict.fromkeys(named_params(sql))).close()
    except sqlite3.Error as exc:
        message = str(exc)
        if any(text in message for text in ("locked", "unable to open", "disk I/O", "not a database",
                                            "malformed")):
            raise DatabaseUnavailable(f"The SQLite file {path} cannot be read: {message}") from None
        if not writes and "not authorized" in message:
            message += (" (a query may only read: this statement would change the database or its "
                        "settings; make the tool an action)")
        return redact(message)
    finally:
        conn.close()
    return None


class _ReadThread:
    """A reader's own thread. A read's job goes in through a SimpleQueue and its result comes back with
    call_soon_threadsafe: the least a hop to another thread costs in asyncio (a ThreadPoolExecutor adds
    a concurrent Future, its lock and condition, and the chaining of two futures)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> asyncio.Future[Any]:
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def _serve(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            loop, future, fn, args = job
            try:
                outcome: tuple[Any, BaseException | None] = (fn(*args), None)
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome = (None, exc)
            with suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, *outcome)
            del job, future, outcome

    def stop(self) -> None:
        """Finish the job in hand, then end."""
        self._jobs.put(None)
        self._thread.join()


class _Reader:
    """A read-only connection, its deadline, and the value-length limit it is set to."""

    __slots__ = ("conn", "deadline", "like_length", "limited_for", "max_length", "thread")

    def __init__(self, path: Path) -> None:
        """mode=ro, query_only, the authorizer, and a deadline-checking progress handler.

        busy_timeout stays 0 so a read tried on the event loop never sleeps there; the worker path waits.
        """
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only=ON")
            conn.set_authorizer(_read_only_authorizer)
            self.deadline = _Deadline()
            conn.set_progress_handler(self.deadline, _PROGRESS_STEPS)
            self.max_length = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
            self.like_length = conn.getlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH)
            self.limited_for: int | None = None  # the max_bytes SQLITE_LIMIT_LENGTH is set for
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def limit_values(self, max_bytes: int | None) -> None:
        """SQLITE_LIMIT_LENGTH for the next read on a worker thread: no value larger than the answer may
        be (SQLite then refuses it with SQLITE_TOOBIG instead of building it); SQLite's own maximum
        without a limit."""
        if max_bytes == self.limited_for:
            return
        wanted = self.max_length if max_bytes is None else min(max(max_bytes, _MIN_VALUE_LIMIT),
                                                                 self.max_length)
        if self.limited_for == _ON_LOOP:
            self.conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, self.like_length)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, wanted)
        self.limited_for = max_bytes

    def limit_for_loop(self) -> None:
        """Limits for a read on the event loop, under which no single SQLite instruction can hold the
        loop for long: values (and SQL text) of at most _LOOP_VALUES bytes (a string function's work
        grows with its values' size; `instr` with the square of it), and short LIKE/GLOB patterns. A
        lookup's few values then cannot make a large answer, so they need no counting. A statement
        that needs more fails at once (SQLITE_TOOBIG, "pattern too complex") and runs on a worker
        thread under the full limits."""
        if self.limited_for != _ON_LOOP:
            self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _LOOP_VALUES)
            self.conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, _LOOP_LIKE)
            self.limited_for = _ON_LOOP


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
        self._read_threads: list[_ReadThread] | None = None
        # one API key holds half the readers, more only while one stays free for others (server.handoff)
        self.shares: Shares[str] = Shares(readers // 2, capacity=readers)
        self._health: sqlite3.Connection | None = None  # /health's own connection
        # raw reads are tried on the event loop only under the watchdog, and never on a file with
        # virtual tables (a full-text search is one instruction that no limit here bounds)
        self._watchdog: Watchdog | None = None

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
            self._read_threads = []
            for number in range(self._readers_wanted):
                reader = _Reader(self.path)
                self._readers.append(reader.conn)
                reader.thread = _ReadThread(f"sqlite-read-{number}")
                self._read_threads.append(reader.thread)
                self._idle.append(reader)
            self._health = _Reader(self.path).conn
            virtual = self._health.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table' "
                                           "AND sql LIKE 'CREATE VIRTUAL TABLE%'").fetchone()[0]
            if not virtual:
                self._watchdog = Watchdog()
        except sqlite3.Error as exc:
            await self.close()
            raise DatabaseUnavailable(f"Cannot open the SQLite file {self.path}: {exc}") from None

    async def close(self) -> None:
        if self._read_threads is not None:
            for thread in self._read_threads:
                thread.stop()
            self._read_threads = None
        for reader in self._readers:
            with suppress(sqlite3.Error):
                reader.close()
        self._readers.clear()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stop()
        health, self._health = self._health, None
        if health is not None:
            with suppress(sqlite3.Error):
                health.close()
        self._idle = []
        self._waiting.fail(lambda: DatabaseUnavailable("The database was closed."))
        if self._writer is not None:
            with suppress(sqlite3.Error, ValueError):
                await self._writer.close()
        self._writer = None

    async def ping(self) -> None:
        """A round trip on /health's own connection (on the loop: it takes microseconds and never
        waits), so readers busy with slow statements never make the database look down."""
        health = self._health
        if health is None:
            raise DatabaseUnavailable("The database is not open.")
        if not self.path.is_file():
            raise DatabaseUnavailable(f"The SQLite file {self.path} is missing.")
        try:
            health.execute("SELECT 1").fetchall()
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"The SQLite file {self.path} cannot be read: {exc}") from None

    async def read(self, sql: str, params: Params, *, max_rows: int, timeout: float, raw: bool = False,
                   max_bytes: int | None = None, owner: str | None = None) -> Rows:
        """A read is tried on the event loop for at most INLINE_BUDGET (a point lookup takes
        microseconds, and skipping the thread hop avoids GIL hand-offs that dominate latency under
        load), under the loop's tighter limits (and, for raw SQL, the watchdog: the module's docstring);
        one that needs longer or more is stopped by SQLite and run again on a worker thread under the
        rest of its limit (reads change nothing, so running one again is safe). On a worker thread a
        read holds a reader across awaits, so there `owner` (the API key; the calling key when not
        given) waits while it holds its share of the readers and one more would leave none free for
        other keys; a read on the loop gives its reader back before anyone else runs, so it needs no
        share."""
        if not self._readers or self._read_threads is None:
            raise DatabaseUnavailable("The database is not open.")
        bound = _bind(params)
        watchdog = self._watchdog
        if not self._idle or (raw and watchdog is None):
            return await self._read_on_worker(sql, bound, max_rows, timeout, raw, max_bytes,
                                              owner or call_owner.get())
        reader = self._idle.pop()
        started = time.monotonic()
        deadline = reader.deadline
        deadline.at = started + min(timeout, INLINE_BUDGET)
        reader.limit_for_loop()
        try:
            if raw:
                watchdog.watch(reader.conn, started + _RAW_INLINE_CUTOFF)  # type: ignore[union-attr]
            return _fetch(reader.conn, sql, bound, max_rows, max_bytes, _LOOP_VALUES)
        except sqlite3.Error as exc:
            if not (_needs_more_time(exc, timeout) or _over_loop_limits(exc)):
                raise self._translate(exc, deadline, raw, max_bytes, (sql, *bound.values())) from None
        finally:
            if raw:
                watchdog.done()  # type: ignore[union-attr]
            deadline.at = float("inf")
            self._give_back(reader)
        return await self._read_on_worker(sql, bound, max_rows, started + timeout - time.monotonic(), raw,
                                          max_bytes, owner or call_owner.get())

    async def _read_on_worker(self, sql: str, bound: dict[str, Any], max_rows: int, remaining: float,
                              raw: bool, max_bytes: int | None, owner: str | None) -> Rows:
        """A read on a reader's thread, within `remaining` seconds once it has a reader (and the owner's
        share place)."""
        if owner is not None and not self.shares.take_now(owner):
            await self.shares.take(owner)
        try:
            reader = self._idle.pop() if self._idle else await self._waiting.wait(self._give_back)
            deadline = reader.deadline
            deadline.at = time.monotonic() + remaining
            try:
                reader.limit_values(max_bytes)
                return await self._on_worker(reader, sql, bound, max_rows, max_bytes, remaining)
            except sqlite3.Error as exc:
                raise self._translate(exc, deadline, raw, max_bytes, (sql, *bound.values())) from None
            finally:
                deadline.at = float("inf")
                self._give_back(reader)
        finally:
            if owner is not None:
                self.shares.give_back(owner)

    def _give_back(self, reader: _Reader) -> None:
        if not self._waiting.give(reader):
            self._idle.append(reader)

    async def _on_worker(self, reader: _Reader, sql: str, bound: dict[str, Any], max_rows: int,
                         max_bytes: int | None, remaining: float) -> Rows:
        """Run on a worker thread, interrupted by a loop timer when `remaining` seconds are up; a
        cancelled caller interrupts the statement too, and waits for the thread to let go of the
        connection before it goes back to the pool."""
        loop = asyncio.get_running_loop()
        conn, deadline = reader.conn, reader.deadline
        timer = loop.call_later(max(0.0, remaining), _time_is_up, conn, deadline)
        work = reader.thread.submit(loop, _fetch_patiently, conn, deadline, sql, bound, max_rows, max_bytes)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            _time_is_up(conn, deadline)  # stopped for good: not taken for the watchdog's stray interrupt
            with suppress(sqlite3.Error, BridgeError):
                await work
            raise
        finally:
            timer.cancel()

    @asynccontextmanager
    async def transaction(self, *, timeout: float, owner: str | None = None
                          ) -> AsyncIterator[_SqliteTransaction]:
        """The one writer, in turn (`owner` is not counted: writes already queue one at a time)."""
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

    async def check_sql(self, sql: str, *, writes: bool, timeout: float) -> str | None:
        """On a connection of its own, on a worker thread (opening a file is blocking I/O), so the
        check never holds a reader or the writer that Voka's calls need."""
        if self._writer is None:
            raise DatabaseUnavailable("The database is not open.")
        if not self.path.is_file():
            raise DatabaseUnavailable(f"The SQLite file {self.path} is missing.")
        return await asyncio.to_thread(_prepare_only, self.path, sql, writes, int(timeout * 1000))

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

    def _translate(self, exc: sqlite3.Error, deadline: _Deadline, raw: bool,
                   max_bytes: int | None = None, caller: Iterable[object] = ()) -> BridgeError:
        """`caller`: what the caller sent (raw SQL, values), never quoted back (engine_messages)."""
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and message == "interrupted" and deadline.expired():
            return QueryTimeout("The query took too long and was stopped.")
        if max_bytes is not None and getattr(exc, "sqlite_errorname", "") == "SQLITE_TOOBIG":
            return ResponseTooLarge(max_bytes, single_value=True)
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
            return refusal(BadRequest, "The SQL was not accepted", exc, caller, code="sql_error")
        if raw and isinstance(exc, sqlite3.InterfaceError):
            return refusal(BadRequest, "The SQL arguments were not accepted", exc, caller, code="sql_error")
        log.error("database error in a catalog tool", extra={"fields": {"error": message}})
        failed = InternalError("The tool failed inside the database; the owner can see why in the log.",
                               code="tool_failed")
        failed.detail = redact(f"The database refused the tool's SQL: {message}")  # for the owner only
        return failed


class _SqliteTransaction:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: dict[str, Any]) -> Rows:
        async with self._conn.execute(sql, _bind(params)) as cursor:
            fetched = await cursor.fetchall()
            columns = [d[0] for d in cursor.description or ()]
            changes = cursor.rowcount
        return Rows(columns, [dict(zip(columns, row, strict=False)) for row in fetched], changes=changes)
