"""Catalog tools as MCP tools: definitions for `tools/list` and results for `tools/call`.

The input schema is the catalog's own (`Tool.input_schema`), so what a client is told and what the
executor accepts can never drift. Calls go through the one ToolExecutor; this module only decides how an
outcome or a failure looks on the MCP wire.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from server.catalog import Catalog, Tool
from server.errors import BridgeError
from server.executor import MAX_SQL_ARGS, MAX_SQL_CHARS, CallContext, Outcome, ToolExecutor
from server.jsonsafe import dumps
from server.keys import Principal
from server.mcp.protocol import INTERNAL_ERROR, INVALID_PARAMS, RpcError

PAGE_SIZE = 100
SQL_TOOL = "run_sql"
# An action's idempotency key over MCP (DESIGN section 10): the `Idempotency-Key` HTTP header, or this
# key in the tools/call `params._meta`; a replayed first answer carries `_meta[META_REPLAYED] = true`.
META_IDEMPOTENCY_KEY = "voka/idempotencyKey"
META_REPLAYED = "voka/replayed"

QUERY_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rows": {"type": "array", "items": {"type": "object"},
                 "description": "The matching rows, one object per row (column name -> value)."},
        "count": {"type": "integer", "minimum": 0, "description": "How many rows are returned."},
        "truncated": {"type": "boolean",
                      "description": "True when more rows matched than the row cap allows."},
    },
    "required": ["rows", "count", "truncated"],
    "additionalProperties": False,
}
ACTION_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The record the action wrote (its returned columns), or {\"changes\": N} when it "
                   "returns none.",
}
SQL_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": MAX_SQL_CHARS,
                  "description": "One read-only SQL statement; use $1, $2, ... for values."},
        "args": {"type": "array", "maxItems": MAX_SQL_ARGS,
                 "items": {"type": ["string", "number", "boolean", "null"]},
                 "description": "Values for $1, $2, ... in order."},
    },
    "required": ["query"],
    "additionalProperties": False,
}


def tool_definition(tool: Tool) -> dict[str, Any]:
    annotations: dict[str, Any] = {"title": tool.title, "readOnlyHint": tool.read_only,
                                   "openWorldHint": False}
    if not tool.read_only:
        annotations["destructiveHint"] = tool.destructive
        if tool.idempotent:
            annotations["idempotentHint"] = True
    return {
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": QUERY_OUTPUT_SCHEMA if tool.read_only else ACTION_OUTPUT_SCHEMA,
        "annotations": annotations,
    }


def sql_tool_definition(max_rows: int, timeout: float) -> dict[str, Any]:
    return {
        "name": SQL_TOOL,
        "title": "Run read-only SQL",
        "description": ("Run one read-only SQL query on the business database and get the rows back. The "
                        "database itself refuses any change. At most "
                        f"{max_rows} rows; stopped after {timeout:g} s. Read the database schema resource "
                        "first to learn the table and column names."),
        "inputSchema": SQL_INPUT_SCHEMA,
        "outputSchema": QUERY_OUTPUT_SCHEMA,
        "annotations": {"title": "Run read-only SQL", "readOnlyHint": True, "openWorldHint": False},
    }


class McpTools:
    """What one key sees as tools, cached per catalog, and how its calls run."""

    def __init__(self, executor: ToolExecutor) -> None:
        self.executor = executor
        self._catalog: Catalog | None = None
        self._lists: dict[Principal, list[dict[str, Any]]] = {}

    def _sql_allowed(self, principal: Principal, catalog: Catalog) -> bool:
        return "sql" in principal.scopes and catalog.get(SQL_TOOL) is None

    def definitions(self, principal: Principal) -> list[dict[str, Any]]:
        bridge = self.executor.bridge
        catalog = bridge.catalog
        if catalog is not self._catalog:
            self._catalog, self._lists = catalog, {}
        cached = self._lists.get(principal)
        if cached is None:
            cached = [tool_definition(tool) for tool in self.executor.tools_for(principal)]
            if self._sql_allowed(principal, catalog):
                limits = bridge.config.limits
                cached.append(sql_tool_definition(limits.max_rows, limits.query_timeout_seconds))
            if len(self._lists) > 1000:
                self._lists.clear()
            self._lists[principal] = cached
        return cached

    def list_page(self, principal: Principal, cursor: Any) -> dict[str, Any]:
        tools = self.definitions(principal)
        start = decode_cursor(cursor)
        page: dict[str, Any] = {"tools": tools[start:start + PAGE_SIZE]}
        if start + PAGE_SIZE < len(tools):
            page["nextCursor"] = encode_cursor(start + PAGE_SIZE)
        return page

    async def call(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        """Run one `tools/call`; business and validation failures come back as `isError` results."""
        principal = ctx.principal
        assert principal is not None
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise RpcError(INVALID_PARAMS, "tools/call needs the tool's `name`")
        ctx.tool = name[:64]
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "tools/call `arguments` must be an object")
        catalog = self.executor.bridge.catalog
        is_sql = name == SQL_TOOL and self._sql_allowed(principal, catalog)
        tool = None if is_sql else catalog.get(name)
        visible = tool is not None and principal.may_use_tool(name) and tool.kind in principal.scopes
        if not is_sql and not visible:
            raise RpcError(INVALID_PARAMS, "Unknown tool: list the tools to see their names",
                           audit_code="unknown_tool")
        meta = params.get("_meta")
        idempotency_key = meta.get(META_IDEMPOTENCY_KEY) if isinstance(meta, dict) else None
        if idempotency_key is None:
            idempotency_key = ctx.idempotency_key
        elif ctx.idempotency_key is not None and ctx.idempotency_key != idempotency_key:
            return error_result(f"The Idempotency-Key header and _meta[\"{META_IDEMPOTENCY_KEY}\"] differ; "
                                "send one key.", ctx, "idempotency_conflict")
        try:
            if is_sql:
                args = arguments or {}
                unknown = sorted(set(args) - {"query", "args"})
                if unknown:
                    return error_result(f"run_sql takes `query` and `args`, not {', '.join(unknown)}.",
                                        ctx, "invalid_params")
                outcome = await self.executor.run_sql(ctx, args.get("query"), args.get("args"))
            else:
                outcome = await self.executor.call_tool(ctx, name, arguments, idempotency_key=idempotency_key)
        except BridgeError as exc:
            if exc.detail != exc.message:  # the cause the caller is not told, for the owner's audit row
                ctx.detail.setdefault("reason", exc.detail[:300])
            if 400 <= exc.status < 500 and exc.status not in (401, 403):
                return error_result(exc.message, ctx, exc.code)
            raise RpcError(INTERNAL_ERROR, exc.message, audit_code=exc.code) from None
        return success_result(outcome)


def structured(outcome: Outcome) -> dict[str, Any]:
    if outcome.kind == "action":
        return outcome.data if isinstance(outcome.data, dict) else {"result": outcome.data}
    return {"rows": outcome.data, "count": outcome.rows, "truncated": outcome.truncated}


def success_result(outcome: Outcome) -> dict[str, Any]:
    content = structured(outcome)
    result = {"content": [{"type": "text", "text": dumps(content)}], "structuredContent": content,
              "isError": False}
    if outcome.replayed:
        result["_meta"] = {META_REPLAYED: True}
    return result


def error_result(message: str, ctx: CallContext, code: str) -> dict[str, Any]:
    """A tool-level failure the assistant can read out (2025-11-25: invalid arguments are these too)."""
    ctx.error_code = code
    return {"content": [{"type": "text", "text": message}], "isError": True}


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"tools:{offset}".encode()).decode("ascii")


def decode_cursor(cursor: Any) -> int:
    if cursor is None:
        return 0
    if isinstance(cursor, str):
        try:
            text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
        except (binascii.Error, UnicodeError, ValueError):
            text = ""
        prefix, _, number = text.partition(":")
        if prefix == "tools" and number.isdigit():
            return int(number)
    raise RpcError(INVALID_PARAMS, "Invalid cursor: pass back the nextCursor value exactly as received")
