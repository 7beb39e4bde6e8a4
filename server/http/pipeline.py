"""The outermost middleware: every request, accepted or refused, gets one JSON answer and one audit row.

Errors become `{"success": false, "error", "code"}` with their status; anything unexpected becomes a
plain 500 (the details go to error.log, never to the caller).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from server.audit import asked_for
from server.bridge import Bridge
from server.errors import BridgeError, PayloadTooLarge
from server.events import RequestFinished
from server.executor import CallContext
from server.http.appstate import BODY, BRIDGE, CLIENT, CONTEXT
from server.jsonsafe import dumps
from server.stats import REFUSED_STATUSES

log = logging.getLogger("server.access")
BODY_PREVIEW = 2048
PEEK_SECONDS = 0.25  # a refused caller's body that is slower than this is not waited for

_HTTP_CODES = {404: ("not_found", "There is nothing at this address."),
               405: ("method_not_allowed", "This address does not accept that HTTP method."),
               413: ("payload_too_large", "The request body is too large.")}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(payload), status=status, headers=headers,
                        content_type="application/json")


def error_response(exc: BridgeError) -> web.Response:
    return json_response({"success": False, "error": exc.message, "code": exc.code}, exc.status,
                         exc.headers)


def client_address(request: web.Request, bridge: Bridge) -> str:
    """The caller's address. Through the managed tunnel (a request on its ingress listener), the one its
    provider's header names (CF-Connecting-IP, or ngrok's X-Forwarded-For hop); on any other connection
    such headers are not believed, except X-Forwarded-For from a loopback peer when the owner set
    `[server] trust_forwarded_for` for a proxy of their own."""
    remote = request.remote or "unknown"
    ingress = bridge.tunnel_ingress
    if ingress is not None and ingress.arrived(request):
        return ingress.client(request) or remote
    if bridge.config.server.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For")
        try:
            local = ipaddress.ip_address(remote).is_loopback
        except ValueError:
            local = False
        if forwarded and local:
            candidate = forwarded.split(",")[-1].strip()
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return remote


@web.middleware
async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    ctx = CallContext(route=request.path[:200])
    request[CONTEXT] = ctx
    bridge = request.app[BRIDGE]
    client = client_address(request, bridge)
    request[CLIENT] = client
    response: web.StreamResponse
    try:
        response = await handler(request)
    except BridgeError as exc:
        response = _refuse(ctx, exc)
    except web.HTTPException as exc:
        if exc.status == 413:
            response = _refuse(ctx, PayloadTooLarge("The request body is too large."))
        elif exc.status in _HTTP_CODES:
            code, message = _HTTP_CODES[exc.status]
            allow = {k: v for k, v in exc.headers.items() if k == "Allow"}
            response = _refuse(ctx, BridgeError(message, code=code, status=exc.status, headers=allow))
        else:
            raise
    except Exception:
        log.exception("unhandled error", extra={"fields": {"route": ctx.route}})
        response = _refuse(ctx, BridgeError("Internal server error."))
    if response.status >= 400 and ctx.error_code is None:
        ctx.error_code = f"http_{response.status}"
    if response.status in REFUSED_STATUSES and BODY not in request:
        await _read_refused(request, ctx, bridge.config.limits.max_body_bytes)
    _finish(bridge, request, ctx, client, response, (time.perf_counter() - started) * 1000)
    return response


async def _read_refused(request: web.Request, ctx: CallContext, max_bytes: int) -> None:
    """A request refused before its body was read (no key, wrong key, over its limit): read the body
    now, if it is small and arrives at once, so the owner sees what was asked (audit.asked_for)."""
    length = request.content_length
    if request.body_exists and length is not None and 0 < length <= max_bytes:
        try:
            async with asyncio.timeout(PEEK_SECONDS):
                request[BODY] = await request.content.readexactly(length)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
    asked = asked_for(ctx.route, request.get(BODY))
    if asked.protocol == "mcp":  # an MCP adapter that was reached has said so already
        ctx.protocol = "mcp"
    ctx.tool = ctx.tool or asked.tool


def _refuse(ctx: CallContext, exc: BridgeError) -> web.Response:
    ctx.error_code = exc.code
    if exc.detail != exc.message:  # the cause the caller is not told, for the owner's audit row
        ctx.detail.setdefault("reason", exc.detail[:300])
    return error_response(exc)


_second: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    """Now as `datetime.now(UTC).isoformat(timespec="milliseconds")` writes it, with the date and time
    formatted once a second (per request, the datetime calls cost as much as building the whole record)."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}+00:00"


def _milliseconds(value: float) -> float:
    """To the nearest microsecond, halves up (round(value, 3) took a quarter of a microsecond)."""
    return int(value * 1000 + 0.5) / 1000


def _preview(body: bytes | None) -> str | None:
    """The first bytes of a body as text (cut before decoding: a long body is never decoded whole)."""
    return body[:BODY_PREVIEW].decode("utf-8", "replace") if body else None


def _finish(bridge: Bridge, request: web.Request, ctx: CallContext, client: str, response: web.StreamResponse,
            duration_ms: float) -> None:
    principal = ctx.principal
    raw_body = request.get(BODY)
    sent = response.body if isinstance(response, web.Response) else None
    entry = RequestFinished(
        ts=_timestamp(),
        key_id=principal.key_id if principal else None,
        key_name=principal.name if principal else None,
        client=client, method=request.method, route=ctx.route, protocol=ctx.protocol, tool=ctx.tool,
        status=response.status, duration_ms=_milliseconds(duration_ms), rows=ctx.rows,
        error_code=ctx.error_code,
        request_body=_preview(raw_body),
        response_body=_preview(sent if isinstance(sent, bytes) else None),
        detail=str(ctx.detail["reason"])[:200] if "reason" in ctx.detail else None,
    )
    bridge.audit.record(entry)  # the audit writer also puts the request's line in combined.log
    bridge.events.publish(entry)
