"""`GET /openapi.json`: the REST API as OpenAPI 3.1, built from the live catalog.

Without a key the document shows the request shapes only; with a valid key it also lists, with their
parameter schemas, exactly the tools that key may call, so a stranger learns nothing about the shop.
The parameter schemas are the catalog's own, the same ones the executor validates with.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server import __version__
from server.catalog import TOOL_NAME, Tool
from server.executor import MAX_SQL_ARGS, MAX_SQL_CHARS
from server.http.appstate import BRIDGE, context
from server.http.auth import authenticate, presented_key
from server.http.pipeline import json_response
from server.keys import Principal

_ERRORS = {
    "400": "Bad input: the message says what to fix",
    "401": "Missing, unknown, expired or revoked API key",
    "403": "The key may not do this (scope or tool allowlist)",
    "404": "No such tool",
    "408": "The request body did not arrive in time",
    "409": "The data says no (duplicate, not enough stock, idempotency conflict)",
    "413": "Body too large",
    "415": "Body is not JSON",
    "429": "Rate limited; see Retry-After",
    "500": "Unexpected failure (no details are ever exposed)",
    "503": "Database unavailable",
    "504": "The query or request took too long",
}
_RATE_HEADERS = {
    name: {"description": description, "schema": {"type": "string"}}
    for name, description in (("RateLimit", "Draft IETF RateLimit field: limit, remaining, reset"),
                              ("RateLimit-Policy", "Draft IETF RateLimit-Policy field: quota;w=window"))
}
_SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _call_schema(tool: Tool, field: str) -> dict[str, Any]:
    """A named call of one catalog tool: {"name"|"action": TOOL, "params": {...its schema...}}."""
    required = [field]
    if tool.input_schema.get("required"):
        required.append("params")
    return {"type": "object", "title": tool.title, "description": tool.description,
            "properties": {field: {"const": tool.name}, "params": tool.input_schema},
            "required": required, "additionalProperties": False}


def _generic_call(field: str) -> dict[str, Any]:
    return {"type": "object", "required": [field], "additionalProperties": False,
            "properties": {field: {"type": "string", "pattern": TOOL_NAME.pattern},
                           "params": {"type": "object"}}}


def _schemas(tools: list[Tool] | None, sql: bool) -> dict[str, Any]:
    queries = [t for t in tools or [] if t.kind == "query"]
    actions = [t for t in tools or [] if t.kind == "action"]
    query_calls: list[dict[str, Any]] = ([_call_schema(t, "name") for t in queries] if tools is not None
                                         else [_generic_call("name")])
    if sql:
        query_calls.append(_ref("SqlQuery"))
    if not query_calls:
        query_calls = [_generic_call("name")]
    action_calls = [_call_schema(t, "action") for t in actions] or [_generic_call("action")]
    return {
        "SqlQuery": {
            "type": "object", "description": "Read-only SQL with $1, $2 ... placeholders (scope sql)",
            "properties": {"query": {"type": "string", "minLength": 1, "maxLength": MAX_SQL_CHARS},
                           "args": {"type": "array", "maxItems": MAX_SQL_ARGS, "items": _SCALAR}},
            "required": ["query"], "additionalProperties": False},
        "QueryParams": {"oneOf": query_calls},
        "ActionParams": {"oneOf": action_calls},
        "QueryEnvelope": {"type": "object", "required": ["method", "params"], "additionalProperties": False,
                          "properties": {"method": {"const": "query"}, "params": _ref("QueryParams")}},
        "ActionEnvelope": {"type": "object", "required": ["method", "params"], "additionalProperties": False,
                           "properties": {"method": {"const": "action"}, "params": _ref("ActionParams")}},
        "QueryResult": {
            "type": "object", "required": ["success", "data"],
            "properties": {"success": {"const": True},
                           "data": {"type": "array", "items": {"type": "object"}},
                           "count": {"type": "integer", "minimum": 0},
                           "truncated": {"type": "boolean"}}},
        "ActionResult": {"type": "object", "required": ["success", "data"],
                         "properties": {"success": {"const": True}, "data": {"type": "object"}}},
        "Error": {"type": "object", "required": ["success", "error", "code"],
                  "properties": {"success": {"const": False}, "error": {"type": "string"},
                                 "code": {"type": "string"}}},
        "Health": {"type": "object", "required": ["status", "timestamp"],
                   "properties": {"status": {"enum": ["healthy", "unhealthy"]},
                                  "timestamp": {"type": "string", "format": "date-time"},
                                  "error": {"type": "string"}}},
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors() -> dict[str, Any]:
    responses: dict[str, Any] = {code: {"description": text, "content": _json(_ref("Error"))}
                                 for code, text in _ERRORS.items()}
    responses["429"]["headers"] = {"Retry-After": {"description": "Seconds to wait", "required": True,
                                                   "schema": {"type": "string"}}}
    return responses


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Runs an action at most once per API key and key: a retry gets the first answer "
                   "(marked Idempotent-Replayed: true); the same key with another body is a 409.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}
_REPLAYED = {"Idempotent-Replayed": {"description": "true when this is the stored first answer to the "
                                                    "Idempotency-Key", "schema": {"type": "string"}}}


def _operation(summary: str, body: dict[str, Any], result: str, *, actions: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "requestBody": {"required": True, "content": _json(body)},
        "responses": {"200": {"description": "Done",
                              "headers": {**_RATE_HEADERS, **(_REPLAYED if actions else {})},
                              "content": _json(_ref(result))}, **_errors()},
    }
    if actions:
        operation["parameters"] = [_IDEMPOTENCY_KEY]
    return {"post": operation}


def document(bridge: Any, principal: Principal | None) -> dict[str, Any]:
    """The OpenAPI document as `principal` may see it (None: shapes only, no tool names)."""
    tools = bridge.executor.tools_for(principal) if principal is not None else None
    sql = principal is None or "sql" in principal.scopes
    result_of_any = {"oneOf": [_ref("QueryResult"), _ref("ActionResult")]}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Voka Bridge", "version": __version__,
                 "description": "The shop database's allowed queries and actions for Voka AI. "
                                "The same tools are served over MCP at / and /mcp (JSON-RPC bodies)."},
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": _schemas(tools, sql),
        },
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "paths": {
            "/": _operation("Run a query or an action (the Voka envelope)",
                            {"oneOf": [_ref("QueryEnvelope"), _ref("ActionEnvelope")]}, "AnyResult",
                            actions=True),
            "/query": _operation("Run a catalog query, or read-only SQL with the sql scope",
                                 {"oneOf": [_ref("QueryEnvelope"), _ref("QueryParams")]}, "QueryResult"),
            "/action": _operation("Run a catalog action",
                                  {"oneOf": [_ref("ActionEnvelope"), _ref("ActionParams")]}, "ActionResult",
                                  actions=True),
            "/health": {"get": {
                "summary": "Liveness with a real database round trip; details only with a valid key",
                "security": [{}, {"ApiKey": []}, {"Bearer": []}],
                "responses": {
                    "200": {"description": "Healthy", "content": _json(_ref("Health"))},
                    "503": {"description": "Database unreachable", "content": _json(_ref("Health"))}},
            }},
        },
    }
    doc["components"]["schemas"]["AnyResult"] = result_of_any
    if bridge.config.server.public_url:
        doc["servers"] = [{"url": bridge.config.server.public_url}]
    return doc


async def openapi(request: web.Request) -> web.Response:
    principal = authenticate(request) if presented_key(request) else None
    if principal is not None:
        context(request).principal = principal
    return json_response(document(request.app[BRIDGE], principal))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
