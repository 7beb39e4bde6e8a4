"""The one tool executor: every REST and MCP call runs through here.

It checks scopes and the key's tool allowlist, validates arguments against the tool's schema, applies the
row cap and time limit, runs action steps in one transaction, and reports rows for the audit log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.catalog import Step, Tool
from server.db.base import Rows, Transaction, call_owner
from server.errors import BadRequest, BridgeError, Forbidden, InvalidParams, ResponseTooLarge, UnknownTool
from server.idempotency import Slot, check_key, fingerprint
from server.jsonsafe import dumps, dumps_bytes
from server.keys import Principal
from server.sharedstate import Generation
from server.webhooks.outbox import body_for

if TYPE_CHECKING:
    from server.bridge import Bridge

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_SQL_CHARS = 20_000
MAX_SQL_ARGS = 100


@dataclass
class CallContext:
    """What one request is and did: filled in along the pipeline, read by the audit log."""

    principal: Principal | None = None
    route: str = ""
    protocol: str = "rest"
    tool: str | None = None
    rows: int | None = None
    error_code: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None  # the request's Idempotency-Key header (MCP reads it from here)
    place: Any = None  # its place among its key's requests in progress (server.ratelimit._Slot), if any


@dataclass
class Outcome:
    data: Any
    rows: int
    truncated: bool = False
    kind: str = "query"
    replayed: bool = False  # the stored first answer to an idempotency key, not a new run
    size: int = 0  # a query's rows: a lower bound of their JSON in bytes (server.db.budget)


def _fill(template: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "?")), template)


def _decode_json_columns(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    for column in columns:
        value = row.get(column)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                row[column] = json.loads(value)
    return row


def _encode_answer(outcome: Outcome) -> str:
    return dumps([outcome.data, outcome.rows])


def _replay(text: str) -> Outcome:
    data, rows = json.loads(text)
    return Outcome(data, rows, kind="action", replayed=True)


class ToolExecutor:
    def __init__(self, bridge: Bridge, generation: Generation | None = None) -> None:
        """`generation` counts writes; shared by all workers of `serve --workers N`, so an action on one
        worker makes every other worker's cached rows stale at once."""
        self.bridge = bridge
        self.generation = generation or Generation()
        self._cache: dict[tuple[str, str], tuple[float, int, Outcome]] = {}

    def clear_cache(self) -> None:
        self._cache.clear()

    def tools_for(self, principal: Principal) -> list[Tool]:
        """The catalog tools this key may see and call (MCP tools/list uses this)."""
        return [tool for tool in self.bridge.catalog
                if principal.may_use_tool(tool.name) and tool.kind in principal.scopes]

    def _require(self, principal: Principal, scope: str, what: str) -> None:
        if scope not in principal.scopes:
            raise Forbidden(f"This API key may not {what} (it lacks the '{scope}' scope).")

    def resolve(self, ctx: CallContext, name: Any, kind: str | None) -> Tool:
        if not isinstance(name, str) or not name:
            raise BadRequest("Name the tool to call, e.g. {\"name\": \"find_customer_by_phone\"}.",
                             code="missing_tool")
        ctx.tool = name[:64]
        tool = self.bridge.catalog.get(name)
        principal = ctx.principal
        assert principal is not None
        if tool is None or not principal.may_use_tool(name):
            # the name is not quoted back: a masked echo would confirm a guessed secret in it
            raise UnknownTool("There is no tool by that name; list the tools to see their names.")
        if kind is not None and tool.kind != kind:
            raise UnknownTool(f"{name} is an {tool.kind}, not a {kind}: send it as method \"{tool.kind}\".")
        return tool

    async def call_tool(self, ctx: CallContext, name: Any, args: Any, *, kind: str | None = None,
                        idempotency_key: str | None = None) -> Outcome:
        """Run one catalog tool; an action with an idempotency key runs at most once per key."""
        tool = self.resolve(ctx, name, kind)
        principal = ctx.principal
        assert principal is not None
        self._require(principal, tool.kind, f"run {tool.kind} tools")
        bound = tool.bind(args)
        call_owner.set(principal.key_id)  # the key's share of database connections (server.handoff)
        if tool.kind == "query":
            outcome = await self._query(tool, bound)
            self._bound_answer(ctx, outcome)
        else:
            outcome = await self._run_action(principal, tool, bound, args, idempotency_key)
        ctx.rows = outcome.rows
        return outcome

    async def _run_action(self, principal: Principal, tool: Tool, bound: dict[str, Any], args: Any,
                          idempotency_key: str | None) -> Outcome:
        """An action with an idempotency key or webhook events is recorded around its commit
        (server/ledger.py), so a crash can neither double it nor lose or invent its events."""
        events = tool.events if self.bridge.config.webhooks.url else ()
        if idempotency_key is None:
            return await self._action(tool, bound, tracked=bool(events), events=events)
        return await self.bridge.idempotency.run_once(
            principal.key_id, check_key(idempotency_key), fingerprint(tool.name, args),
            lambda slot: self._action(tool, bound, tracked=True, slot=slot, events=events),
            encode=_encode_answer, decode=_replay)

    async def _query(self, tool: Tool, bound: dict[str, Any]) -> Outcome:
        cache_key = None
        generation = 0
        if tool.cache_ttl_seconds:  # only cached tools pay for the key
            cache_key = (tool.name, json.dumps(bound, sort_keys=True, default=str))
            generation = self.generation.value()
            hit = self._cache.get(cache_key)
            if hit and hit[0] > time.monotonic() and hit[1] == generation:
                return hit[2]
        limits = self.bridge.config.limits
        max_rows = min(tool.max_rows or limits.max_rows, limits.max_rows)
        db = await self.bridge.database()
        result = await db.read(tool.steps[0].sql_for(db.engine), bound, max_rows=max_rows,
                               timeout=limits.query_timeout_seconds, max_bytes=limits.max_response_bytes)
        rows = [_decode_json_columns(row, tool.json_columns) for row in result.rows]
        outcome = Outcome(rows, len(rows), result.truncated, "query", size=result.size)
        if cache_key is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = (time.monotonic() + tool.cache_ttl_seconds, generation, outcome)
        return outcome

    async def _action(self, tool: Tool, bound: dict[str, Any], *, tracked: bool = False,
                      slot: Slot | None = None, events: tuple[str, ...] = ()) -> Outcome:
        db = await self.bridge.database()
        timeout = self.bridge.config.limits.query_timeout_seconds
        if tracked:
            when = dt.datetime.now(dt.UTC)
            outcome: Outcome = await self.bridge.ledger.run(
                db, timeout, lambda tx: self._steps(tx, tool, db.engine, bound), slot=slot,
                events=[(name, lambda o, name=name: body_for(name, o.data, when)) for name in events],
                encode=_encode_answer)
        else:
            async with db.transaction(timeout=timeout) as tx:
                outcome = await self._steps(tx, tool, db.engine, bound)
        self.clear_cache()  # a write may change what cached queries would answer (here and on other workers)
        self.generation.bump()
        return outcome

    async def _steps(self, tx: Transaction, tool: Tool, engine: str, bound: dict[str, Any]) -> Outcome:
        last = Rows([], [])
        for step in tool.steps:
            last = await self.run_step(tx, step, engine, bound)
        if last.rows:
            return Outcome(_decode_json_columns(dict(last.rows[0]), tool.json_columns), len(last.rows),
                           kind="action")
        return Outcome({"changes": max(last.changes, 0)}, max(last.changes, 0), kind="action")

    @staticmethod
    async def run_step(tx: Transaction, step: Step, engine: str, bound: dict[str, Any]) -> Rows:
        """One action step inside an open transaction, with its refusal rules (also used by the
        Tools page's rolled-back test run, so a test behaves exactly like a real call)."""
        result = await tx.execute(step.sql_for(engine), bound)
        if step.fail_if_rows and result.rows:
            values = {**bound, **result.rows[0]}
            raise BridgeError(_fill(step.fail_if_rows, values), code=step.code, status=step.status)
        if step.fail_if_none and not result.rows and result.changes <= 0:
            raise BridgeError(_fill(step.fail_if_none, bound), code=step.code, status=step.status)
        return result

    async def run_sql(self, ctx: CallContext, sql: Any, args: Any) -> Outcome:
        """Raw read-only SQL with `$1` placeholders, for keys with the `sql` scope."""
        assert ctx.principal is not None
        ctx.tool = "sql"
        self._require(ctx.principal, "sql", "run raw SQL")
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidParams("`query` must be a non-empty SQL string.")
        if len(sql) > MAX_SQL_CHARS:
            raise InvalidParams(f"`query` is longer than {MAX_SQL_CHARS} characters.")
        if args is None:
            args = []
        if not isinstance(args, list) or len(args) > MAX_SQL_ARGS:
            raise InvalidParams(f"`args` must be a list of at most {MAX_SQL_ARGS} values for $1, $2, ...")
        if any(isinstance(a, dict | list) for a in args):
            raise InvalidParams("`args` values must be strings, numbers, booleans or null.")
        limits = self.bridge.config.limits
        db = await self.bridge.database()
        call_owner.set(ctx.principal.key_id)  # the key's share of database connections (server.handoff)
        result = await db.read(sql, args, max_rows=limits.max_rows, timeout=limits.query_timeout_seconds,
                               raw=True, max_bytes=limits.max_response_bytes)
        outcome = Outcome(result.rows, len(result.rows), result.truncated, "sql", size=result.size)
        self._bound_answer(ctx, outcome)
        ctx.rows = len(result.rows)
        return outcome

    def _bound_answer(self, ctx: CallContext, outcome: Outcome) -> None:
        """Refuse rows over [limits] max_response_bytes as the caller would receive them: once as JSON
        over REST, twice over MCP (a tools/call result carries them as text, escaped, and as
        structuredContent). The database layer already stopped fetching at a lower bound past the limit;
        the real JSON is measured only for answers within a sixteenth of it (the bound is never more than
        a few times low), so a lookup pays nothing for this. Actions are not refused: their one row
        comes after a commit, and refusing it would hide a write that was made."""
        limit = self.bridge.config.limits.max_response_bytes
        if outcome.size * 16 <= limit:
            return
        body = dumps_bytes(outcome.data)
        size = len(body)
        if ctx.protocol == "mcp":
            size = 2 * size + body.count(b'"') + body.count(b"\\")
        if size > limit:
            raise ResponseTooLarge(limit)
