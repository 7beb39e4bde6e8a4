"""The audit log: one row per request in state.sqlite3, written in batches off the request path."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import orjson

from server.events import RequestFinished
from server.logs import log_requests, redact

log = logging.getLogger(__name__)

AUDIT_COLUMNS = ("ts", "key_id", "key_name", "client", "method", "route", "protocol", "tool", "status",
                 "duration_ms", "rows", "error_code", "detail")
_MAX_PENDING = 100_000
_values = attrgetter(*AUDIT_COLUMNS)
_INSERT_ROW = f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"
_INSERT_BATCH = (f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) SELECT "
                 + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(AUDIT_COLUMNS)))
                 + " FROM json_each(?)")


_FIELD_SEPARATOR = "\x00"  # rows whose fields hold it themselves are masked field by field


_TEXT_COLUMNS = tuple(c for c in AUDIT_COLUMNS if c not in ("status", "duration_ms", "rows"))
_texts = attrgetter(*_TEXT_COLUMNS)


def _row(entry: RequestFinished) -> tuple[Any, ...]:
    """The audit row, masked: a caller may paste a key or password into a path or a tool name, and the
    row outlives the request (done here, on the writer thread, to keep it off the request path). The
    same masked row also makes the request's line in combined.log.

    The text fields are masked as one string, so a row costs one pass of the patterns, not one per field,
    and a row with nothing to mask (nearly all) is kept as it is."""
    values = _values(entry)
    joined = _FIELD_SEPARATOR.join(filter(None, _texts(entry)))
    masked = redact(joined)
    if masked == joined:  # a match inside one field is a match inside the joined text
        return values  # type: ignore[no-any-return]
    row = list(values)
    texts = [i for i, value in enumerate(row) if isinstance(value, str)]
    joined = _FIELD_SEPARATOR.join(row[i] for i in texts)
    parts = redact(joined).split(_FIELD_SEPARATOR) if joined.count(_FIELD_SEPARATOR) == len(texts) - 1 else []
    if len(parts) != len(texts):  # a field held the separator, or a mask ran across one: field by field
        parts = [redact(row[i]) for i in texts]
    for i, part in zip(texts, parts, strict=True):
        row[i] = part
    return tuple(row)


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """The batch as one statement over one JSON array. executemany steps SQLite once per row, and each
    step lets go of the GIL and takes it back: under load, a hand-off with the event loop per row, which
    cost the server about a tenth of its time. JSON carries every value an audit row holds (text, integers,
    floats, null) and SQLite's json_extract gives each back with its type, except text holding NUL
    (json_extract stops there) or a lone surrogate (no UTF-8 form): such batches go row by row."""
    try:
        packed = orjson.dumps(rows)
    except TypeError:
        conn.executemany(_INSERT_ROW, [_storable(row) for row in rows])
        return
    if b"\\u0000" in packed:
        conn.executemany(_INSERT_ROW, rows)
        return
    conn.execute(_INSERT_BATCH, (packed,))


def _storable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A lone surrogate (no caller text is known to carry one; a batch must never fail on it) written as
    its escape."""
    return tuple(v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v
                 for v in row)


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request asked for, read from its path and body: which protocol, which tool, and for MCP
    the JSON-RPC method (`tools/list`, `tools/call`, ...)."""

    protocol: str
    tool: str | None = None
    mcp_method: str | None = None


def _text(value: Any, limit: int = 64) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def asked_for(route: str, body: bytes | str | None) -> Asked:
    """What a refused request asked for (it was turned away before a protocol adapter read it), so its
    audit row names the tool as a served one would. Only names are taken from the body, never values:
    the row must not hold what a caller sent (a pasted key, a password in raw SQL)."""
    try:
        value = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, list) and value:
        value = value[0]  # a JSON-RPC batch: its first request
    message = value if isinstance(value, dict) else {}
    if route == "/mcp" or "jsonrpc" in message:
        method = _text(message.get("method"))
        params = message.get("params")
        tool = _text(params.get("name")) if method == "tools/call" and isinstance(params, dict) else None
        return Asked("mcp", tool, method)
    params = message.get("params") if "method" in message else message
    if not isinstance(params, dict):
        return Asked("rest")
    if _text(params.get("name")):
        return Asked("rest", _text(params["name"]))
    if _text(params.get("action")):
        return Asked("rest", _text(params["action"]))
    return Asked("rest", "sql" if "query" in params else None)


_MCP_METHODS = {"initialize": "to start a session", "tools/list": "the list of tools",
                "tools/call": "a tool", "server/discover": "what this server offers", "ping": "a ping"}


def what_was_asked(event: RequestFinished) -> str:
    """In plain words, what a request asked for: the tool, raw SQL, or the MCP step, and where."""
    where = f"{event.method} {event.route}"
    if event.tool == "sql":
        return f"raw SQL written by the caller ({where})"
    if event.tool:
        return f"the tool “{event.tool}” ({where})"
    method = asked_for(event.route, event.request_body).mcp_method if event.request_body else None
    if method:
        return f"MCP {method}: {_MCP_METHODS.get(method, 'a protocol step')} ({where})"
    return where


class AuditLog:
    """Buffers audit records and flushes them every `interval` seconds on the state thread.

    `on_flush` gets each batch too, so key usage (count, last used) is saved with the same write.
    """

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, *,
                 interval: float = 0.05, on_flush: Callable[[list[RequestFinished]], None] | None = None
                 ) -> None:
        self._conn = conn
        self._executor = executor
        self._interval = interval
        self._on_flush = on_flush
        self._pending: list[RequestFinished] = []
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def record(self, entry: RequestFinished) -> None:
        if len(self._pending) >= _MAX_PENDING:
            self._dropped += 1
            return
        self._pending.append(entry)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Let the writer finish the batch it may be writing (never cancel it: a batch whose write was
        still queued behind other state work would be lost), then write what is left."""
        self._stopping = True
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("audit flush failed; records kept for the next try")

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch)
        except Exception:
            self._pending[:0] = batch
            raise
        if self._dropped:
            log.error("audit buffer overflowed", extra={"fields": {"dropped": self._dropped}})
            self._dropped = 0

    def _write(self, batch: list[RequestFinished]) -> None:
        rows = [_row(entry) for entry in batch]
        with self._conn:
            self._conn.execute("BEGIN")
            _insert(self._conn, rows)
            if self._on_flush:
                self._on_flush(batch)
        log_requests(rows, AUDIT_COLUMNS)

    def recent(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        """Newest first; for history paging in the app and for `keys list`-style reports."""
        sql = f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM audit"
        args: tuple[Any, ...] = ()
        if before_id is not None:
            sql += " WHERE id < ?"
            args = (before_id,)
        rows = self._conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [dict(zip(("id", *AUDIT_COLUMNS), row, strict=False)) for row in rows]

    def prune(self, older_than_days: int) -> int:
        cutoff = (dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)).isoformat()
        return self._conn.execute("DELETE FROM audit WHERE ts < ?", (cutoff,)).rowcount
