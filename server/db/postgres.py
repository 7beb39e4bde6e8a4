"""PostgreSQL backend on asyncpg: a pool, prepared statements, and read-only enforced by PostgreSQL itself.

Every read runs alone in a `BEGIN READ ONLY` transaction that we open, with `SET LOCAL statement_timeout`
and `lock_timeout`; the statement itself goes through the extended protocol, so it is exactly one
statement (`COMMIT; DROP TABLE ...` is refused by the server's parser). Raw SQL must describe itself as
returning rows before it runs (PostgreSQL's own Describe, not our parsing), which keeps out the utility
statements whose effects outlive a transaction (PREPARE, DEALLOCATE, LOAD, LISTEN, COPY). Afterwards one
round trip releases session advisory locks and rolls back (which ends settings, cursors, listeners and
notifications made inside), so nothing a statement did is there for the next request on that connection;
the same round trip opens the next read's transaction, which stays empty until that read's statement
(server.db.pgpool explains why that is harmless). Rows come through a cursor stopped at max_rows + 1.

Limits that protect everyone else: the server ends a statement at `statement_timeout` (and the client
cancels it a second later if the server could not); one API key holds up to half the pool, and more only
while one connection stays free (server.handoff.Shares), so its flood of slow statements always leaves
room for another key's call; an answer's rows are counted
against `max_response_bytes` as they are decoded, and the bytes arriving on the socket are counted too
(_WireGuard), so a single 400 MB value is cut off after a few MB instead of being received whole.

The password comes from DATABASE_URL or the OS keyring (never config.toml) and is registered with the log
redactor; no message built here contains it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import inspect
import ipaddress
import json
import logging
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
import asyncpg.exceptions as pgerr

from server.config import DatabaseSettings
from server.db.base import Column, Database, Params, Rows, Table, call_owner
from server.db.budget import rows_size
from server.db.engine_messages import refusal
from server.db.pgpool import ConnectionPool, PoolClosed, Pooled
from server.db.pgsafety import ROLE_SQL, RoleReport, quote_ident
from server.errors import (
    BadRequest,
    BridgeError,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InternalError,
    InvalidParams,
    QueryTimeout,
    ReadOnlyViolation,
    ResponseTooLarge,
)
from server.handoff import Shares
from server.logs import redact, register_secret
from server.secretstore import SecretStore
from server.sqlparams import to_numbered

log = logging.getLogger(__name__)

# One round trip after every read: end the transaction, then undo what survives a rollback. Settings
# (SET, set_config), LISTEN, cursors and notifications made inside the transaction end with it, temp
# tables and PREPARE cannot run as a row-returning statement in a READ ONLY transaction; session advisory
# locks are what core PostgreSQL lets a statement leave behind. State that extensions keep per session
# (dblink connections, PL/Python's SD/GD) is out of reach of any reset command, DISCARD ALL included: a
# least-privilege role without EXECUTE on such functions is the guard there (`voka-bridge check` prints
# the SQL for one).
_CLEANUP = "ROLLBACK; SELECT pg_advisory_unlock_all()"
# The same after a read that went well, followed by the next read's BEGIN (see _end_read): the locks go
# first, inside the finished read's transaction, so no statement runs in the new one.
_CLEANUP_AND_BEGIN = "SELECT pg_advisory_unlock_all(); ROLLBACK; "
# A connection waits at most this long in the pool (also idle in an opened, empty transaction); below the
# idle_in_transaction_session_timeout set for our sessions.
_IDLE_LIFETIME = 30.0
_CLIENT_GRACE = 1.0  # the client gives up this long after the server should have cancelled
_MAX_PREFETCH = 2000
_SHAPE_CACHE = 4096
_LOOPBACK = {"localhost", "127.0.0.1", "::1", ""}
_INT_TYPES = {"int2", "int4", "int8", "oid"}
_FLOAT_TYPES = {"float4", "float8"}
_TEXT_TYPES = {"text", "varchar", "bpchar", "name", "char", "citext", "xml", "unknown"}
_JSON_TYPES = {"json", "jsonb"}
_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}
_INTEGER = re.compile(r"[+-]?\d+")
_PLAIN_TYPES = frozenset({str, int, bool, type(None), decimal.Decimal, dt.date, dt.datetime, dt.time,
                          dt.timedelta, bytes, uuid.UUID, dict})




class _WireGuard(asyncio.Protocol):
    """Between a connection's socket and asyncpg's protocol: counts the bytes of a read's answer as they
    arrive and, past `limit`, drops the connection, so no answer (not even one value of it) is ever
    received whole. asyncpg keeps a message until it is complete, and a single 400 MB value is one
    message; this is the only place where its size shows before it is all in memory.

    Put in place once per connection with the transport's public set_protocol (on uvloop that call also
    stops and restarts reading, two syscalls: too dear per read); armed only while a read's statement
    runs, so otherwise it costs one comparison per socket read. Everything but data_received is passed
    straight on.
    """

    def __init__(self, transport: asyncio.Transport, protocol: asyncio.Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._forward = protocol.data_received
        self.limit: int | None = None
        self.received = 0
        self.tripped = False

    @classmethod
    def install(cls, con: asyncpg.Connection) -> None:
        """Put a guard on this connection's socket, if its transport lets one in (otherwise an answer is
        still counted row by row, only after it arrived)."""
        transport = getattr(con, "_transport", None)
        if transport is not None and hasattr(transport, "set_protocol"):
            transport.set_protocol(cls(transport, transport.get_protocol()))

    def arm(self, max_bytes: int) -> None:
        # Rows travel in PostgreSQL's binary format, where a small number can take more bytes than its
        # JSON (an int8 is 8 bytes and a 4-byte length); 4 times the answer's limit, plus a margin for
        # the protocol's own messages, is never reached by an answer that fits.
        self.limit = 4 * max_bytes + _WIRE_MARGIN
        self.received = 0
        self.tripped = False

    def disarm(self) -> None:
        self.limit = None

    def data_received(self, data: bytes) -> None:
        limit = self.limit
        if limit is not None:
            self.received += len(data)
            if self.received > limit:
                self.tripped = True
                self.limit = None
                self._transport.abort()  # asyncpg sees a lost connection; the pool drops it
                return
        self._forward(data)

    def eof_received(self) -> bool | None:
        return self._protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()


_WIRE_MARGIN = 1024 * 1024
# An answer that took at most 1/_WIRE_SMALL of max_response_bytes on the wire, in columns of
# _WIRE_BOUNDED_TYPES, is under the limit as JSON even sent twice over MCP and escaped there, so its rows
# are not counted (nor its JSON measured). On the wire a value takes its 4-byte length and its bytes. As
# JSON it takes its column name (at most 63 bytes, each at most 6 once escaped) with quotes, colon and
# comma, and at most 6 bytes per byte of it (an escaped control character; `false` for a boolean's one
# byte); over MCP at most about 840 bytes for a NULL under the worst name (210 times its 4 bytes) and 13
# per further byte. Not so numeric (8 bytes on the wire can carry a scale of 16,383 zeros), arrays,
# composite or other types: those answers are counted. tests/server/db/test_answer_size.py serves the
# worst answers both ways.
_WIRE_SMALL = 512
_WIRE_BOUNDED_TYPES = frozenset({"text", "varchar", "bpchar", "name", "char", "int2", "int4", "int8", "oid",
                                 "bool", "date", "time", "timestamp", "timestamptz", "uuid", "float4",
                                 "float8", "bytea", "json", "jsonb"})


def _guard(pooled: Pooled) -> _WireGuard | None:
    """The connection's _WireGuard (found once, then remembered with it), or None."""
    guard = pooled.guard
    if guard is None:
        transport = getattr(pooled.con, "_transport", None)
        found = transport.get_protocol() if transport is not None else None
        guard = pooled.guard = found if isinstance(found, _WireGuard) else False
    return guard or None


def _not_a_query() -> ReadOnlyViolation:
    return ReadOnlyViolation(
        "Only statements that return rows can run here (SELECT, WITH ... SELECT, VALUES, TABLE, SHOW, "
        "EXPLAIN): this one would change the database or the session.")


def _has_bind_execute() -> bool:
    """asyncpg's Connection._execute(query, args, limit, timeout, return_status=) runs a cached prepared
    statement with a row limit in ONE round trip; the public cursor needs a second one to close its
    portal (measured: about 1.7x the reads per second). Used only when its signature is the known one;
    otherwise the public prepare/cursor path below does the same job."""
    try:
        parameters = inspect.signature(asyncpg.Connection._execute).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    expected = ["self", "query", "args", "limit", "timeout"]
    return list(parameters)[:5] == expected and "return_status" in parameters


_BIND_EXECUTE = _has_bind_execute()


def _json_encode(value: Any) -> str:
    """A str is already JSON text (a raw SQL argument); anything else is serialised."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class PgTarget:
    """A postgresql:// URL taken apart: the DSN without its password, and who/where for people."""

    dsn: str
    user: str
    host: str
    port: int
    database: str
    url_password: str | None
    url_sslmode: str | None

    @property
    def keyring_account(self) -> str:
        return f"database-password:{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def loopback(self) -> bool:
        return self.host in _LOOPBACK or self.host.startswith("/")

    def describe(self) -> str:
        return f"PostgreSQL database {self.database!r} on {self.host}:{self.port} as {self.user!r}"


def parse_url(url: str) -> PgTarget:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = parts.password
    kept = []
    sslmode = None
    for key, value in query:
        if key == "password":
            password = value
            continue
        if key == "sslmode":
            sslmode = value
        kept.append((key, value))
    params = dict(query)
    host = parts.hostname or params.get("host", "") or "localhost"
    try:
        port = parts.port or int(params.get("port", "5432"))
    except ValueError:
        port = 5432
    user = unquote(parts.username or "") or params.get("user", "") or _os_user()
    database = unquote(parts.path.lstrip("/")) or params.get("dbname", "") or user
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    dsn = urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept), ""))
    return PgTarget(dsn, user, host, port, database, unquote(password) if password else None, sslmode)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "postgres"


def database_password(target: PgTarget, secrets: SecretStore | None = None) -> str | None:
    """DATABASE_URL's password, else the keyring's for this user@host:port/db, else none (trust, .pgpass)."""
    if target.url_password:
        return target.url_password
    return (secrets or SecretStore()).get(target.keyring_account)


@dataclass(frozen=True)
class _Shape:
    """What PostgreSQL's Describe said about a statement: its result columns and parameter types."""

    columns: tuple[str, ...]
    params: tuple[str, ...]
    # every column is of a type whose JSON is at most a few times its size on the wire (_WIRE_SMALL)
    wire_bounded: bool = False


def _plain(value: Any) -> Any:
    """Database values the JSON layer does not know become plain JSON (inet, ranges, bits, NaN...)."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if isinstance(value, asyncpg.Range):
        return {"lower": _plain(value.lower), "upper": _plain(value.upper), "lower_inc": value.lower_inc,
                "upper_inc": value.upper_inc, "empty": value.isempty}
    if isinstance(value, asyncpg.BitString):
        return value.as_string()
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network
                  | ipaddress.IPv6Network | ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    if isinstance(value, uuid.UUID | dt.date | dt.time | dt.timedelta | decimal.Decimal | bytes | str | int):
        return value
    return str(value)


def _row(record: asyncpg.Record) -> dict[str, Any]:
    return {key: _plain(value) for key, value in record.items()}


def _coerce(value: Any, pg_type: str, position: int) -> Any:
    """Fit a JSON value to the parameter's type, as a text-protocol driver would (seed compatibility)."""
    if value is None:
        return None
    try:
        if pg_type in _INT_TYPES:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
                return int(value)
            raise ValueError
        if pg_type in _TEXT_TYPES:
            if isinstance(value, str):
                return value
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, dt.date | dt.time):
                return value.isoformat()
            return str(value)
        if pg_type == "numeric":
            if isinstance(value, bool):
                raise ValueError
            return value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value).strip())
        if pg_type in _FLOAT_TYPES:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if pg_type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if pg_type == "date" and isinstance(value, str):
            return dt.date.fromisoformat(value.strip())
        if pg_type in ("timestamp", "timestamptz"):
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value.strip())
            elif type(value) is dt.date:
                value = dt.datetime.combine(value, dt.time())
            if pg_type == "timestamptz" and isinstance(value, dt.datetime) and value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value
        if pg_type in ("time", "timetz") and isinstance(value, str):
            return dt.time.fromisoformat(value.strip())
        if pg_type == "uuid" and isinstance(value, str):
            return uuid.UUID(value.strip())
        if pg_type == "interval" and isinstance(value, int | float) and not isinstance(value, bool):
            return dt.timedelta(seconds=value)
        if pg_type == "bytea" and isinstance(value, str):
            return bytes.fromhex(value[2:]) if value.startswith("\\x") else value.encode("utf-8")
    except (ValueError, ArithmeticError, OverflowError):
        # never the value itself: a masked echo would confirm a guessed secret (engine_messages)
        raise InvalidParams(f"Argument ${position} is not a valid {pg_type}.") from None
    return value


def _coerce_all(args: list[Any], shape: _Shape) -> list[Any]:
    if len(args) != len(shape.params):
        raise InvalidParams(f"The SQL has {len(shape.params)} placeholder(s) ($1, $2, ...) but "
                            f"{len(args)} value(s) were given in args.", code="sql_args")
    return [_coerce(value, pg_type, i) for i, (value, pg_type) in enumerate(zip(args, shape.params,
                                                                                  strict=True), start=1)]


def _changes(status: str | None) -> int:
    """`INSERT 0 3`, `UPDATE 2`, `DELETE 1` -> the row count; -1 when the command has none."""
    tail = (status or "").rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _gone(con: asyncpg.Connection) -> bool:
    """Closed, or already taken back by the pool (asyncpg detaches a proxy whose socket died)."""
    try:
        return con.is_closed()
    except asyncpg.InterfaceError:
        return True


def _is_argument_error(exc: BaseException) -> bool:
    """asyncpg's client-side 'this Python value does not fit the parameter type'."""
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)


def _duplicate_columns(exc: pgerr.PostgresError) -> str:
    match = re.match(r"Key \((.+?)\)=", getattr(exc, "detail", None) or "")
    return match.group(1) if match else (getattr(exc, "constraint_name", None) or "values")


def _constraint_error(exc: pgerr.IntegrityConstraintViolationError) -> Conflict:
    if isinstance(exc, pgerr.UniqueViolationError | pgerr.ExclusionViolationError):
        message = f"A record with the same {_duplicate_columns(exc)} already exists."
    elif isinstance(exc, pgerr.ForeignKeyViolationError):
        message = "This refers to a record that does not exist (or is still referred to by another)."
    elif isinstance(exc, pgerr.CheckViolationError):
        name = getattr(exc, "constraint_name", None) or "a check"
        message = f"The change breaks a rule of the database ({name})."
    elif isinstance(exc, pgerr.NotNullViolationError):
        message = f"A required value is missing: {getattr(exc, 'column_name', None) or 'a column'}."
    else:
        message = "The change conflicts with the data in the database."
    return Conflict(message, code="constraint_violation")


# What stops a statement that is not the statement's fault: the connection, the server's state, a lock or
# a timeout. Any other error while PostgreSQL prepares a statement is about its SQL.
_NOT_THE_SQL = (pgerr.PostgresConnectionError, pgerr.OperatorInterventionError,
                pgerr.InsufficientResourcesError, pgerr.LockNotAvailableError, pgerr.TransactionRollbackError,
                pgerr.InvalidAuthorizationSpecificationError, pgerr.InvalidCachedStatementError)


def _database_says(exc: pgerr.PostgresError) -> str:
    """PostgreSQL's own message, with its hint when it gives one (`Perhaps you meant ...`)."""
    hint = getattr(exc, "hint", None)
    return redact(f"{exc} ({hint})" if hint else str(exc))


async def _start(pooled: Pooled, begin: str) -> None:
    """Open our transaction, unless the connection already waits in exactly this one (see _end_read)."""
    if pooled.armed != begin or not pooled.con.is_in_transaction():  # never run outside our transaction
        await pooled.con.execute(begin if pooled.armed is None else "ROLLBACK; " + begin)
    pooled.armed = None


async def _end_read(pooled: Pooled, failure: BaseException | None, *, rearm: str | None = None) -> bool:
    """End a read in one round trip; False when the connection must go.

    After a read that went well: release session advisory locks, roll back (which ends settings, cursors,
    listeners and notifications made inside), and open the next read's transaction (`rearm`) in the same
    message, so the next read is one round trip. It runs nothing before that read's statement: no snapshot,
    no lock, no transaction id. After a server-side error the transaction is merely aborted: roll back,
    then release the locks. After a client-side timeout, a cancellation or a broken socket the state is
    unknown and the connection goes.
    """
    con = pooled.con
    if _gone(con) or not (failure is None or isinstance(failure, pgerr.PostgresError | BridgeError)):
        return False
    if isinstance(failure, pgerr.PostgresConnectionError | pgerr.OperatorInterventionError) and not \
            isinstance(failure, pgerr.QueryCanceledError):
        return False
    try:
        if failure is None and rearm is not None:
            await con.execute(_CLEANUP_AND_BEGIN + rearm, timeout=2.0)
            pooled.armed = rearm
        else:
            await con.execute(_CLEANUP, timeout=2.0)
    except (Exception, asyncio.CancelledError):
        pooled.armed = None
        return False
    return True


class PostgresDatabase(Database):
    engine = "postgresql"

    def __init__(self, url: str, settings: DatabaseSettings, *, secrets: SecretStore | None = None) -> None:
        self.target = parse_url(url)
        self.settings = settings
        self._secrets = secrets
        self._pool: ConnectionPool | None = None
        self._connect: dict[str, Any] = {}
        self._health: asyncpg.Connection | None = None
        self._health_lock = asyncio.Lock()
        self.role: RoleReport | None = None
        self._shapes: OrderedDict[str, _Shape] = OrderedDict()
        self._numbered: dict[str, tuple[str, list[str]]] = {}
        self._begins: dict[tuple[float, bool], str] = {}
        self._last_warning = 0.0
        # one API key holds half the pool, more only while one connection stays free for others
        self.shares: Shares[str] = Shares(settings.pool_max // 2, capacity=settings.pool_max)
        if self.target.url_password:
            register_secret(self.target.url_password)

    def describe(self) -> str:
        return self.target.describe()

    # ---- lifecycle -------------------------------------------------------------------------
    def _ssl(self) -> str | None:
        if self.settings.sslmode:
            return self.settings.sslmode
        if self.target.url_sslmode:
            return None  # asyncpg reads it from the DSN
        return "disable" if self.target.loopback else "prefer"

    async def open(self) -> None:
        password = await asyncio.to_thread(database_password, self.target, self._secrets)
        register_secret(password)
        self._connect = {"dsn": self.target.dsn, "password": password, "ssl": self._ssl(),
                         "server_settings": {"application_name": "voka-bridge",
                                             "idle_in_transaction_session_timeout": "60000"}}
        pool = ConnectionPool(self._new_connection, self.settings.pool_max, _IDLE_LIFETIME,
                              shares=self.shares)
        warm = max(1, min(self.settings.pool_min, self.settings.pool_max))
        held: list[Pooled] = []
        try:
            for _ in range(warm):
                held.append(await pool.acquire(self.settings.connect_timeout_seconds))
            self.role = RoleReport.from_row(await held[0].con.fetchrow(ROLE_SQL))
        except Exception as exc:
            for pooled in held:
                pool.release(pooled, reusable=False)
            pool.terminate()
            raise self._unavailable(exc, connecting=True) from None
        for pooled in held:
            pool.release(pooled, reusable=True)
        self._pool = pool
        if self.role.privileged:
            log.warning("the database role is privileged", extra={"fields": {
                "role": self.role.name, "powers": self.role.powers(),
                "raw_sql": "allowed (opt-in)" if self.settings.allow_privileged_role else "refused"}})

    async def close(self) -> None:
        health, self._health = self._health, None
        if health is not None:
            health.terminate()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=5.0)

    async def _new_connection(self) -> asyncpg.Connection:
        con = await asyncpg.connect(**self._connect, timeout=self.settings.connect_timeout_seconds,
                                    statement_cache_size=256)
        try:
            for name in _JSON_TYPES:
                await con.set_type_codec(name, schema="pg_catalog", encoder=_json_encode, decoder=json.loads,
                                         format="text")
            _WireGuard.install(con)
        except BaseException:
            con.terminate()
            raise
        return con

    async def ping(self) -> None:
        """A round trip on a connection of its own, so a pool busy with requests never reads as down."""
        if self._pool is None:
            raise DatabaseUnavailable("The database is not open.")
        async with self._health_lock:
            try:
                if self._health is None or self._health.is_closed():
                    self._health = await asyncpg.connect(**self._connect, timeout=min(
                        2.0, self.settings.connect_timeout_seconds))
                await self._health.fetchval("SELECT 1", timeout=2.0)
            except (Exception, asyncio.CancelledError) as exc:
                if self._health is not None:
                    self._health.terminate()
                    self._health = None
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise self._unavailable(exc) from None

    # ---- reads -----------------------------------------------------------------------------
    async def read(self, sql: str, params: Params, *, max_rows: int, timeout: float, raw: bool = False,
                   max_bytes: int | None = None, owner: str | None = None) -> Rows:
        if raw and self.role is not None and self.role.privileged and not self.settings.allow_privileged_role:
            raise Forbidden(self.role.refusal(), code="privileged_role")
        if isinstance(params, dict):
            sql, names = self._to_numbered(sql)
            args = [params.get(name) for name in names]
        else:
            args = list(params)
        begin = self._begin(timeout, read_only=True)
        for attempt in (1, 2):
            pooled = await self._acquire(timeout, owner)
            con = pooled.con
            failure: BaseException | None = None
            guard = _guard(pooled) if max_bytes is not None else None
            try:
                await _start(pooled, begin)
                if guard is not None:
                    guard.arm(max_bytes)  # type: ignore[arg-type]
                return await self._stream(con, sql, args, max_rows, timeout, raw, max_bytes, guard)
            except pgerr.InvalidCachedStatementError as exc:
                failure = exc
                self._shapes.pop(sql, None)
                if attempt == 2:
                    raise DatabaseUnavailable("The database schema changed during the query; try again.",
                                              code="schema_changed") from None
            except BaseException as exc:
                failure = exc
                if guard is not None and guard.tripped:
                    raise ResponseTooLarge(max_bytes) from None  # type: ignore[arg-type]
                raise self._translate(exc, raw=raw, caller=(sql, *args)) from None
            finally:
                if guard is not None:
                    guard.disarm()
                self._release(pooled, clean=await _end_read(pooled, failure, rearm=begin))
        raise AssertionError("unreachable")

    async def _stream(self, con: asyncpg.Connection, sql: str, args: list[Any], max_rows: int,
                      timeout: float, raw: bool, max_bytes: int | None = None,
                      guard: _WireGuard | None = None) -> Rows:
        shape = await self._shape(con, sql, timeout + _CLIENT_GRACE)
        if raw and not shape.columns:
            raise _not_a_query()
        records, _ = await self._run(con, sql, shape, args, max_rows + 1, timeout + _CLIENT_GRACE)
        truncated = len(records) > max_rows
        columns = list(shape.columns)
        if truncated:
            records = records[:max_rows]
        # All arrived already, bounded on the wire by _WireGuard. An answer that was small on the wire
        # is small as JSON (see _WIRE_SMALL); any other is counted before its values are converted.
        if max_bytes is None or (shape.wire_bounded and guard is not None
                                 and guard.received * _WIRE_SMALL <= max_bytes):
            size = 0
        else:
            size = rows_size(columns, records, max_bytes)
        return Rows(columns, [_row(r) for r in records], truncated, size=size)

    async def _shape(self, con: asyncpg.Connection, sql: str, limit: float) -> _Shape:
        """PostgreSQL's own Describe of the statement, once per SQL text (what kind of statement a
        text is never changes; its parameter types are re-learned if the schema moves)."""
        shape = self._shapes.get(sql)
        if shape is None:
            statement = await con.prepare(sql, name="", timeout=limit)  # unnamed: gone at the next Parse
            attributes = statement.get_attributes()
            shape = _Shape(tuple(a.name for a in attributes),
                           tuple(p.name for p in statement.get_parameters()),
                           all(a.type.name in _WIRE_BOUNDED_TYPES for a in attributes))
            self._shapes[sql] = shape
            if len(self._shapes) > _SHAPE_CACHE:
                self._shapes.popitem(last=False)
        return shape

    async def _run(self, con: asyncpg.Connection, sql: str, shape: _Shape, args: list[Any], row_limit: int,
                   limit: float) -> tuple[list[asyncpg.Record], str | None]:
        """Bind and execute the (cached, prepared) statement, fetching at most row_limit rows (0: all)."""
        coerced = _coerce_all(args, shape)
        try:
            if _BIND_EXECUTE:
                records, status, _ = await con._execute(sql, coerced, row_limit, limit, return_status=True)
                return records, status.decode() if status else None
            statement = await con.prepare(sql, name="", timeout=limit)
            if not row_limit:
                return await statement.fetch(*coerced, timeout=limit), statement.get_statusmsg()
            records: list[asyncpg.Record] = []
            async for record in statement.cursor(*coerced, prefetch=min(row_limit, _MAX_PREFETCH),
                                                 timeout=limit):
                records.append(record)
                if len(records) >= row_limit:
                    break
            return records, None
        except (asyncpg.InterfaceError, pgerr.DataError) as exc:
            if _is_argument_error(exc):
                self._shapes.pop(sql, None)  # the schema moved under a remembered shape
                raise InvalidParams(f"The SQL arguments were not accepted: {exc}", code="sql_args") from None
            raise
        except pgerr.InvalidCachedStatementError:
            self._shapes.pop(sql, None)
            raise

    def _to_numbered(self, sql: str) -> tuple[str, list[str]]:
        """Catalog `:name` SQL -> `$n` SQL, rewritten once per SQL text."""
        hit = self._numbered.get(sql)
        if hit is None:
            if len(self._numbered) > _SHAPE_CACHE:
                self._numbered.clear()
            hit = self._numbered[sql] = to_numbered(sql)
        return hit

    def _begin(self, timeout: float, *, read_only: bool) -> str:
        """The statement that opens a transaction with these limits (written once per timeout: every
        read asks for it)."""
        begin = self._begins.get((timeout, read_only))
        if begin is None:
            statement_ms = max(1, int(timeout * 1000))
            lock_ms = max(1, int(min(self.settings.lock_timeout_seconds, timeout) * 1000))
            mode = " READ ONLY" if read_only else ""
            begin = (f"BEGIN{mode}; SET LOCAL statement_timeout = {statement_ms}; "
                     f"SET LOCAL lock_timeout = {lock_ms}")
            if len(self._begins) > _SHAPE_CACHE:
                self._begins.clear()
            self._begins[(timeout, read_only)] = begin
        return begin

    # ---- writes ----------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self, *, timeout: float, owner: str | None = None) -> AsyncIterator[_PgTransaction]:
        pooled = await self._acquire(timeout, owner)
        con = pooled.con
        clean = False
        try:
            try:
                await _start(pooled, self._begin(timeout, read_only=False))
            except BaseException as exc:
                raise self._translate(exc, raw=False) from None
            try:
                yield _PgTransaction(self, con, timeout)
            except BaseException:
                clean = await self._rollback(con)
                raise
            try:
                await con.execute("COMMIT")
            except BaseException as exc:
                raise self._translate(exc, raw=False, committing=True) from None
            clean = True
        finally:
            self._release(pooled, clean=clean)

    @staticmethod
    async def _rollback(con: asyncpg.Connection) -> bool:
        if _gone(con):
            return False
        try:
            await con.execute("ROLLBACK", timeout=2.0)
        except (Exception, asyncio.CancelledError):
            return False
        return True

    # ---- checking a tool's SQL ---------------------------------------------------------------
    async def check_sql(self, sql: str, *, writes: bool, timeout: float) -> str | None:
        """Parse and Describe only (asyncpg's prepare), inside a transaction that is rolled back: a
        statement is never bound nor executed, and a read is checked in a READ ONLY transaction, as it
        runs for Voka."""
        numbered, _ = self._to_numbered(sql)
        pooled = await self._acquire(timeout)
        failure: BaseException | None = None
        preparing = False
        try:
            try:
                await _start(pooled, self._begin(timeout, read_only=not writes))
                preparing = True
                await pooled.con.prepare(numbered, name="", timeout=timeout + _CLIENT_GRACE)
            except BaseException as exc:
                failure = exc
                if preparing and isinstance(exc, pgerr.PostgresError) and not isinstance(exc, _NOT_THE_SQL):
                    return _database_says(exc)
                raise self._translate(exc, raw=False) from None
        finally:
            self._release(pooled, clean=await _end_read(pooled, failure))
        return None

    # ---- schema ----------------------------------------------------------------------------
    async def schema(self) -> list[Table]:
        pooled = await self._acquire(10.0)
        con = pooled.con
        failure: BaseException | None = None
        try:
            await _start(pooled, self._begin(10.0, read_only=True))
            records = await con.fetch(_SCHEMA_SQL)
            tables: dict[tuple[str, str], Table] = {}
            estimates: dict[tuple[str, str], float] = {}
            for r in records:
                key = (r["schema"], r["table"])
                if key not in tables:
                    name = r["table"] if r["schema"] == "public" else f"{r['schema']}.{r['table']}"
                    tables[key] = Table(name)
                    estimates[key] = r["estimate"]
                tables[key].columns.append(Column(r["column"], r["type"], r["nullable"], r["pk"]))
            for key, table in tables.items():
                if 0 <= estimates[key] < 100_000 or (estimates[key] < 0 and len(tables) < 200):
                    table.row_count = await con.fetchval(
                        f"SELECT count(*) FROM {quote_ident(key[0])}.{quote_ident(key[1])}")
                elif estimates[key] >= 0:
                    table.row_count = int(estimates[key])
            return list(tables.values())
        except BaseException as exc:
            failure = exc
            raise self._translate(exc, raw=False) from None
        finally:
            self._release(pooled, clean=await _end_read(pooled, failure))

    # ---- connections and errors ------------------------------------------------------------
    async def _acquire(self, timeout: float, owner: str | None = None) -> Pooled:
        """A pooled connection, within the acquire timeout; `owner` (default: the calling key) waits its
        turn while it holds its share and one more would leave no connection for other keys."""
        pool = self._pool
        if pool is None:
            raise DatabaseUnavailable("The database is not open.")
        owner = owner or call_owner.get()
        try:
            return await pool.acquire(min(self.settings.acquire_timeout_seconds, timeout), owner)
        except TimeoutError:
            if owner is not None and self.shares.held(owner) >= self.shares.share:
                raise DatabaseUnavailable(
                    "This API key already has its share of the database connections busy with earlier "
                    "requests; try again shortly.", code="database_busy") from None
            raise DatabaseUnavailable("All database connections are busy (or the database is not "
                                      "answering); try again shortly.", code="database_busy") from None
        except PoolClosed:
            raise DatabaseUnavailable("The database is not open.") from None
        except BaseException as exc:
            raise self._unavailable(exc, connecting=True) from None

    def _release(self, pooled: Pooled, *, clean: bool = True) -> None:
        """Back to the pool (which frees its owner's share place); a connection whose state we could not
        restore is closed instead."""
        if self._pool is not None:
            self._pool.release(pooled, reusable=clean)
        elif not _gone(pooled.con):
            pooled.con.terminate()

    def _unavailable(self, exc: BaseException, *, connecting: bool = False) -> DatabaseUnavailable:
        where = f"PostgreSQL at {self.target.host}:{self.target.port}"
        if isinstance(exc, pgerr.InvalidPasswordError | pgerr.InvalidAuthorizationSpecificationError):
            reason = (f"{where} refused the login for user {self.target.user!r} (check the password "
                      "stored with `voka-bridge db set-password`, or the server's pg_hba.conf)")
        elif isinstance(exc, pgerr.InvalidCatalogNameError):
            reason = f"{where} has no database {self.target.database!r}"
        elif isinstance(exc, pgerr.CannotConnectNowError):
            reason = f"{where} is starting up or shutting down"
        elif isinstance(exc, pgerr.TooManyConnectionsError):
            reason = f"{where} has no free connection slots"
        elif isinstance(exc, TimeoutError):
            reason = f"{where} did not answer in time"
        elif isinstance(exc, ConnectionRefusedError):
            reason = f"{where} refused the connection (is it running?)"
        elif isinstance(exc, OSError):
            reason = f"cannot reach {where} ({exc.strerror or type(exc).__name__})"
        elif isinstance(exc, pgerr.AdminShutdownError | pgerr.CrashShutdownError):
            reason = f"{where} closed the connection (restarting?)"
        elif isinstance(exc, pgerr.PostgresError | asyncpg.InterfaceError):
            reason = f"{where}: {redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__}"
        else:
            reason = f"{where}: the connection failed ({type(exc).__name__})"
        now = time.monotonic()
        if now - self._last_warning > 5.0:
            self._last_warning = now
            log.warning("database connection problem", extra={"fields": {"reason": reason,
                                                                           "connecting": connecting}})
        return DatabaseUnavailable(f"The database is unavailable: {reason}.")

    def _translate(self, exc: BaseException, *, raw: bool, committing: bool = False,
                   caller: Iterable[object] = ()) -> BaseException:
        """asyncpg and socket failures -> BridgeError with a plain message; BridgeErrors pass through.
        `caller`: what the caller sent (raw SQL, values), never quoted back (engine_messages)."""
        if isinstance(exc, BridgeError | asyncio.CancelledError | KeyboardInterrupt | SystemExit):
            return exc
        if isinstance(exc, pgerr.QueryCanceledError):
            return QueryTimeout("The query took too long and was stopped.")
        if isinstance(exc, pgerr.LockNotAvailableError):
            return QueryTimeout("The query waited too long for data another change was holding.",
                                code="lock_timeout")
        if isinstance(exc, TimeoutError):
            return QueryTimeout("The database did not answer in time; the query was cancelled.")
        if isinstance(exc, pgerr.IntegrityConstraintViolationError):
            return _constraint_error(exc)
        if isinstance(exc, pgerr.InvalidCachedStatementError):
            return DatabaseUnavailable("The database schema changed during the call; try again.",
                                       code="schema_changed")
        if isinstance(exc, pgerr.TransactionRollbackError):
            return DatabaseUnavailable("The database was busy with a conflicting change; try again.",
                                       code="database_busy")
        if committing and isinstance(exc, OSError | pgerr.PostgresConnectionError | asyncpg.InterfaceError
                                     | pgerr.OperatorInterventionError):
            return DatabaseUnavailable("The database connection was lost while saving; the change may not "
                                       "have been saved. Check before trying again.", code="commit_unknown")
        if isinstance(exc, OSError | pgerr.PostgresConnectionError | pgerr.OperatorInterventionError
                      | pgerr.InsufficientResourcesError | pgerr.InvalidAuthorizationSpecificationError
                      | asyncpg.InternalClientError):
            return self._unavailable(exc)
        if (isinstance(exc, asyncpg.InterfaceError) and not _is_argument_error(exc)
                and ("connection" in str(exc) or "pool" in str(exc))):
            return self._unavailable(exc)
        if isinstance(exc, pgerr.ReadOnlySQLTransactionError):
            return ReadOnlyViolation("Only reading is allowed here: this statement would change the "
                                     "database or its settings.")
        if isinstance(exc, pgerr.InsufficientPrivilegeError):
            return refusal(Forbidden, "The database role may not do that", exc, caller,
                           code="permission_denied")
        if isinstance(exc, pgerr.PostgresSyntaxError) and "multiple commands" in str(exc):
            return BadRequest("Send one SQL statement at a time.", code="multiple_statements")
        if isinstance(exc, pgerr.DataError):
            return refusal(BadRequest, "A value was not accepted by the database", exc, caller,
                           code="invalid_value")
        if _is_argument_error(exc):
            return refusal(InvalidParams, "The SQL arguments were not accepted", exc, caller, code="sql_args")
        if raw and isinstance(exc, pgerr.PostgresError | asyncpg.InterfaceError):
            return refusal(BadRequest, "The SQL was not accepted", exc, caller, code="sql_error")
        log.error("database error in a tool", extra={"fields": {
            "error": type(exc).__name__, "detail": redact(str(exc))[:500]}})
        failed = InternalError("The tool failed inside the database; the owner can see why in the log.",
                               code="tool_failed")
        if isinstance(exc, pgerr.PostgresError):  # for the owner only (app, audit row), never the caller
            failed.detail = f"The database refused the tool's SQL: {_database_says(exc)}"
        return failed


class _PgTransaction:
    """One action's statements on one connection, inside the transaction PostgresDatabase opened."""

    def __init__(self, db: PostgresDatabase, con: asyncpg.Connection, timeout: float) -> None:
        self._db = db
        self._con = con
        self._limit = timeout + _CLIENT_GRACE

    async def execute(self, sql: str, params: dict[str, Any]) -> Rows:
        numbered, names = self._db._to_numbered(sql)
        try:
            shape = await self._db._shape(self._con, numbered, self._limit)
            records, status = await self._db._run(self._con, numbered, shape,
                                                  [params.get(name) for name in names], 0, self._limit)
        except BaseException as exc:
            raise self._db._translate(exc, raw=False) from None
        return Rows(list(shape.columns), [_row(r) for r in records], changes=_changes(status))


_SCHEMA_SQL = """
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column,
       format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,
       COALESCE(a.attnum = ANY (i.indkey::int2[]), false) AS pk, c.reltuples::float8 AS estimate
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname, a.attnum
"""
