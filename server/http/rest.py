"""The Voka request format: `POST /`, `/query`, `/action` → the shared tool executor."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.errors import BadRequest
from server.executor import Outcome
from server.http.appstate import BRIDGE, context
from server.http.body import read_json_object
from server.http.pipeline import json_response
from server.idempotency import check_key

_QUERY_HELP = ('A query is {"name": "TOOL", "params": {...}} or, with the sql scope, '
               '{"query": "SELECT ... WHERE id = $1", "args": [...]}.')
_ACTION_HELP = 'An action is {"action": "TOOL", "params": {...}}.'
_REPLAYED = {"Idempotent-Replayed": "true"}


def _unwrap(body: dict[str, Any], expected: str | None) -> tuple[str, dict[str, Any]]:
    """Accept the envelope {"method", "params"} or, on /query and /action, the params directly."""
    if "method" in body:
        method = body["method"]
        if method not in ("query", "action"):
            raise BadRequest('"method" must be "query" or "action".', code="invalid_method")
        if expected and method != expected:
            raise BadRequest(f'This address takes method "{expected}", not "{method}".',
                             code="invalid_method")
        unknown = set(body) - {"method", "params"}
        if unknown:
            raise BadRequest(f"Unknown field(s) in the envelope: {', '.join(sorted(unknown))}.")
        params = body.get("params")
        if not isinstance(params, dict):
            raise BadRequest('"params" must be a JSON object. ' + (_QUERY_HELP if method == "query"
                                                                     else _ACTION_HELP))
        return method, params
    if expected is None:
        raise BadRequest('Send {"method": "query" | "action", "params": {...}}.', code="invalid_method")
    return expected, body


async def _dispatch(request: web.Request, expected: str | None) -> web.Response:
    bridge = request.app[BRIDGE]
    ctx = context(request)
    body = await read_json_object(request, bridge.config.limits.max_body_bytes)
    method, params = _unwrap(body, expected)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None:  # malformed is refused on any call; only actions use it
        check_key(idempotency_key)
    executor = bridge.executor
    if method == "query":
        if "query" in params and "name" not in params:
            _only(params, {"query", "args"}, _QUERY_HELP)
            outcome = await executor.run_sql(ctx, params["query"], params.get("args"))
        elif "name" in params:
            _only(params, {"name", "params"}, _QUERY_HELP)
            outcome = await executor.call_tool(ctx, params["name"], params.get("params"), kind="query")
        else:
            raise BadRequest(_QUERY_HELP, code="missing_tool")
    else:
        if "action" not in params:
            raise BadRequest(_ACTION_HELP, code="missing_tool")
        _only(params, {"action", "params"}, _ACTION_HELP)
        outcome = await executor.call_tool(ctx, params["action"], params.get("params"), kind="action",
                                           idempotency_key=idempotency_key)
    # A replayed first answer says so (the header Stripe's API uses too), so Voka can tell a retry's
    # answer from a new action.
    return json_response(_success(outcome), headers=_REPLAYED if outcome.replayed else None)


def _only(params: dict[str, Any], allowed: set[str], help_text: str) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(sorted(unknown))}. {help_text}")


def _success(outcome: Outcome) -> dict[str, Any]:
    payload: dict[str, Any] = {"success": True, "data": outcome.data}
    if outcome.kind != "action":
        payload["count"] = outcome.rows
        payload["truncated"] = outcome.truncated
    return payload


async def envelope(request: web.Request) -> web.Response:
    return await _dispatch(request, None)


async def query(request: web.Request) -> web.Response:
    return await _dispatch(request, "query")


async def action(request: web.Request) -> web.Response:
    return await _dispatch(request, "action")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/query", query)
    app.router.add_post("/action", action)
