"""The one tool executor: every REST and MCP call runs through here.

It checks scopes and the key's tool allowlist, validates arguments against the tool's schema, applies the
row cap and time limit, runs action steps in one transaction, and reports rows for the audit log.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.catalog import Step, Tool
from server.db.base import Rows, Transaction
from server.errors import BadRequest, BridgeError, Forbidden, InvalidParams, UnknownTool
from server.idempotency import check_key, fingerprint
from server.jsonsafe import dumps
from server.keys import Principal
from server.sharedstate import Generation

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


@dataclass
class Outcome:
    data: Any
    rows: int
    truncated: bool = False
    kind: str = "query"


def _fill(template: str, values: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "?")), template)


def _decode_json_columns(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    for column in columns:
        value = row.get(column)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                row[column] = json.loads(value)
    return row


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
            raise UnknownTool(f"There is no tool named {name[:64]!r}.")
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
        if tool.kind == "query":
            outcome = await self._query(tool, bound)
        elif idempotency_key is None:
            outcome = await self._action(tool, bound)
        else:
            outcome = await self.bridge.idempotency.run_once(
                principal.key_id, check_key(idempotency_key), fingerprint(tool.name, args),
                lambda: self._action(tool, bound),
                encode=lambda o: dumps([o.data, o.rows]),
                decode=lambda text: Outcome(*json.loads(text), kind="action"))
        ctx.rows = outcome.rows
        return outcome

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
                               timeout=limits.query_timeout_seconds)
        rows = [_decode_json_columns(row, tool.json_columns) for row in result.rows]
        outcome = Outcome(rows, len(rows), result.truncated, "query")
        if cache_key is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = (time.monotonic() + tool.cache_ttl_seconds, generation, outcome)
        return outcome

    async def _action(self, tool: Tool, bound: dict[str, Any]) -> Outcome:
        db = await self.bridge.database()
        last = Rows([], [])
        async with db.transaction(timeout=self.bridge.config.limits.query_timeout_seconds) as tx:
            for step in tool.steps:
                last = await self.run_step(tx, step, db.engine, bound)
        self.clear_cache()  # a write may change what cached queries would answer (here and on other workers)
        self.generation.bump()
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
        result = await db.read(sql, args, max_rows=limits.max_rows, timeout=limits.query_timeout_seconds,
                               raw=True)
        ctx.rows = len(result.rows)
        return Outcome(result.rows, len(result.rows), result.truncated, "sql")
