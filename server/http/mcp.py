"""`/mcp`: the Model Context Protocol's Streamable HTTP transport, in both protocol eras.

A request reaches this adapter after the pipeline, auth and rate-limit stages (the same ones REST uses) and
leaves through the one ToolExecutor (via server.mcp.dispatch). The era is read from `MCP-Protocol-Version`
exactly as the official SDK routes it: absent or a handshake version (2024-11-05 … 2025-11-25) means the
`initialize` handshake with `Mcp-Session-Id`; anything else is the self-contained 2026-07-28 request.
Responses are `application/json`; SSE is used only for the streams that exist to carry notifications
(GET in the handshake era, `subscriptions/listen` in 2026-07-28).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from server.config import ServerSettings
from server.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from server.executor import CallContext
from server.http.appstate import BRIDGE, context
from server.http.body import read_json
from server.http.security import lift_deadline
from server.mcp.dispatch import SERVER_INFO, McpService
from server.mcp.protocol import (
    BATCH_VERSIONS,
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    INVALID_REQUEST,
    META_SERVER_INFO,
    MODERN_HTTP_STATUS,
    MODERN_VERSIONS,
    PARSE_ERROR,
    SESSION_HEADER,
    VERSION_HEADER,
    Message,
    RpcError,
    check_modern_envelope,
    duplicated_routing_header,
    encode,
    error,
    parse_message,
    request_id_of,
    result,
    unsupported_version,
)
from server.mcp.sessions import Session, SessionLimit

MCP = web.AppKey("mcp", McpService)
PATH = "/mcp"
KEEPALIVE_SECONDS = 15.0
CLOSED_CHECK_SECONDS = 1.0
MAX_BATCH = 16
REQUEST_CANCELLED = -32800  # the handshake-era answer to a request the client cancelled (as the SDK sends)
RATE_LIMITED = -32005
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no"}
_INVALID_BODY = "Body must be a single JSON-RPC request or notification object"


class Refusal(Exception):
    """An HTTP-level refusal that still carries a JSON-RPC error body the client can read."""

    def __init__(self, status: int, exc: RpcError, request_id: int | str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(exc.message)
        self.status = status
        self.exc = exc
        self.request_id = request_id
        self.headers = headers


def respond(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=encode(payload), status=status, headers=headers, content_type="application/json")


# ---- Origin (DNS rebinding; the Host check is the guard's, in server.http.security) ---------------
class OriginPolicy:
    """Origins a browser page may call /mcp from: loopback pages, the public_url, allowed_origins."""

    def __init__(self, server: ServerSettings) -> None:
        self.origins = {o.strip().rstrip("/").lower() for o in server.allowed_origins if o.strip()}
        self.hosts = set(_LOOPBACK)
        public = urlsplit(server.public_url).hostname if server.public_url else None
        if public:
            self.hosts.add(public.lower())

    def check(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is None:
            return  # not a browser page (or same-origin navigation): nothing to rebind
        normal = origin.strip().rstrip("/").lower()
        parts = urlsplit(normal)
        if normal in self.origins or (parts.scheme in ("http", "https")
                                      and (parts.hostname or "") in self.hosts):
            return
        raise Refusal(403, RpcError(
            INVALID_REQUEST, f"Forbidden: Origin {origin[:100]!r} is not allowed. If that web page is yours, "
            "add its origin to [server] allowed_origins in config.toml.", audit_code="origin_forbidden"))


_policies: dict[int, tuple[tuple[Any, ...], OriginPolicy]] = {}


def origin_policy(server: ServerSettings) -> OriginPolicy:
    """Cached per settings object; rebuilt when the settings it reads change."""
    signature = (tuple(server.allowed_origins), server.public_url)
    cached = _policies.get(id(server))
    if cached is None or cached[0] != signature:
        cached = (signature, OriginPolicy(server))
        _policies[id(server)] = cached
    return cached[1]


# ---- shared helpers -----------------------------------------------------------------------------
def accepts(request: web.Request) -> tuple[bool, bool]:
    """(JSON acceptable, SSE acceptable), with */* and type/* wildcards as the SDK reads them."""
    accept = request.headers.get("Accept", "").lower()
    wildcard = "*/*" in accept
    return (wildcard or "application/json" in accept or "application/*" in accept,
            wildcard or "text/event-stream" in accept or "text/*" in accept)


async def read_body(request: web.Request, service: McpService) -> Any:
    """The one body reader (server.http.body), its refusals re-spelled as JSON-RPC errors."""
    try:
        return await read_json(request, service.bridge.config.limits.max_body_bytes)
    except UnsupportedMediaType:
        raise Refusal(415, RpcError(INVALID_REQUEST, "Unsupported Media Type: Content-Type must be "
                                                     "application/json", audit_code="unsupported_media_type")
                      ) from None
    except PayloadTooLarge as exc:
        raise Refusal(413, RpcError(INVALID_REQUEST, exc.message, audit_code="payload_too_large")) from None
    except BadRequest as exc:
        raise Refusal(400, RpcError(PARSE_ERROR, f"Parse error: {exc.message}")) from None


def sse_event(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + encode(message) + b"\n\n"


async def pump(request: web.Request, response: web.StreamResponse,
               queue: asyncio.Queue[dict[str, Any] | None], meta: dict[str, Any] | None = None, *,
               idle: float = math.inf) -> None:
    """Write queued messages as SSE events until the queue is closed (None), the client goes away, or
    no message has come for `idle` seconds (keep-alive pings do not count).

    `meta` is stamped into each notification's `params._meta` (a listen stream names its subscription).
    """
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + idle
    ping_at = loop.time() + KEEPALIVE_SECONDS
    while True:
        # Wake at least every CLOSED_CHECK_SECONDS: a client that went away frees its stream place soon.
        wait = min(CLOSED_CHECK_SECONDS, ping_at - loop.time(), quiet_until - loop.time())
        try:
            message = await asyncio.wait_for(queue.get(), max(wait, 0))
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing() or loop.time() >= quiet_until:
                return
            if loop.time() >= ping_at:
                await response.write(b": ping\n\n")
                ping_at = loop.time() + KEEPALIVE_SECONDS
            continue
        if message is None:
            return
        quiet_until = loop.time() + idle
        if meta is not None:
            message = {**message, "params": {**message.get("params", {}), "_meta": meta}}
        await response.write(sse_event(message))


@contextlib.contextmanager
def stream_place(ctx: CallContext, service: McpService, request_id: int | str | None = None
                 ) -> Iterator[float]:
    """An event stream's own place among its key's streams ([rate_limit] max_streams_per_key), taken
    instead of the request place the auth stage gave it, so open streams never starve the key's calls.
    Yields how long the stream may stay quiet before it is closed."""
    key = ctx.principal.key_id if ctx.principal is not None else "-"
    places = service.stream_places
    if not places.take_now(key):
        raise Refusal(429, RpcError(RATE_LIMITED, f"This key already has {places.share} event streams open; "
                                    "close one before opening another.", audit_code="too_many_streams"),
                      request_id, headers={"Retry-After": "5"})
    if ctx.place is not None:
        ctx.place.leave()
    try:
        yield service.bridge.config.limits.stream_idle_seconds
    finally:
        places.give_back(key)


# ---- the endpoint --------------------------------------------------------------------------------
def endpoint(service: McpService) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The /mcp handler for one app's MCP service (bound here, not looked up per request)."""

    async def mcp_endpoint(request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        ctx.protocol = "mcp"
        ctx.idempotency_key = request.headers.get("Idempotency-Key")  # for tools/call (server/mcp/tools.py)
        try:
            origin_policy(service.bridge.config.server).check(request)
            header = request.headers.get(VERSION_HEADER)
            if header is not None and header not in HANDSHAKE_VERSIONS:
                return await modern_post(request, ctx, service)
            if request.method == "POST":
                return await handshake_post(request, ctx, service)
            if request.method == "GET":
                return await handshake_stream(request, ctx, service)
            if request.method == "DELETE":
                return await handshake_delete(request, ctx, service)
            raise Refusal(405, RpcError(INVALID_REQUEST, "Method Not Allowed"),
                          headers={"Allow": "GET, POST, DELETE"})
        except Refusal as refusal:
            ctx.error_code = refusal.exc.audit_code
            return respond(error(refusal.request_id, refusal.exc), refusal.status, refusal.headers)

    return mcp_endpoint


async def answer(ctx: CallContext, service: McpService, version: str, message: Message,
                 session: Session | None = None) -> dict[str, Any]:
    """One request's JSON-RPC response (result or error); in a session, the client may cancel it."""
    try:
        if session is None or message.id is None:
            return result(message.id, await service.call(ctx, version, message.method, message.params))
        return await _cancellable(ctx, service, version, message, session)
    except RpcError as exc:
        ctx.error_code = exc.audit_code
        return error(message.id, exc)


async def _cancellable(ctx: CallContext, service: McpService, version: str, message: Message,
                       session: Session) -> dict[str, Any]:
    """Answer -32800 once `notifications/cancelled` names this request.

    The work itself is not interrupted: a read finishes under its own time limit and a write commits or
    rolls back whole, so a cancel can never leave the owner's data half-changed. Only the answer is dropped.
    """
    assert message.id is not None
    work = asyncio.ensure_future(service.call(ctx, version, message.method, message.params))
    signal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    session.pending[message.id] = signal
    session.in_flight += 1
    try:
        await asyncio.wait((work, signal), return_when=asyncio.FIRST_COMPLETED)
    finally:
        session.in_flight -= 1
        session.last_used = time.monotonic()
        if session.pending.get(message.id) is signal:
            del session.pending[message.id]
    if work.done():
        return result(message.id, work.result())
    work.add_done_callback(_discard)
    ctx.error_code = "cancelled"
    return error(message.id, RpcError(REQUEST_CANCELLED, "Request cancelled"))


def _discard(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so a late failure of cancelled work is not reported as unhandled


# ---- handshake era (2024-11-05 … 2025-11-25) -------------------------------------------------------
async def find_session(request: web.Request, ctx: CallContext, service: McpService) -> Session:
    session_id = request.headers.get(SESSION_HEADER)
    if not session_id:
        raise Refusal(400, RpcError(INVALID_REQUEST, "Bad Request: Missing session ID; send initialize first",
                                    audit_code="missing_session"))
    assert ctx.principal is not None
    session = await service.sessions.find(session_id, ctx.principal.key_id)
    if session is None:
        raise Refusal(404, RpcError(INVALID_REQUEST, "Session not found; send initialize to start a new one",
                                    audit_code="session_not_found"))
    return session


async def on_notification(service: McpService, session: Session, message: Message) -> None:
    if message.method == "notifications/initialized":
        await service.sessions.mark_initialized(session)
    elif message.method == "notifications/cancelled":
        signal = session.pending.get(message.params.get("requestId"))  # type: ignore[arg-type]
        if signal is not None and not signal.done():
            signal.set_result(None)


async def handshake_post(request: web.Request, ctx: CallContext, service: McpService) -> web.Response:
    if not accepts(request)[0]:
        raise Refusal(406, RpcError(INVALID_REQUEST, "Not Acceptable: Client must accept application/json"))
    body = await read_body(request, service)
    if isinstance(body, list):
        return await handshake_batch(request, ctx, service, body)
    try:
        message = parse_message(body)
    except RpcError as exc:
        raise Refusal(400, exc, request_id_of(body)) from None
    if message.kind == "request" and message.method == "initialize":
        if request.headers.get(SESSION_HEADER):
            await find_session(request, ctx, service)
            raise Refusal(400, RpcError(INVALID_REQUEST, "This session is already initialized; send "
                                        "initialize without Mcp-Session-Id to start a new session"),
                          message.id)
        return await initialize(ctx, service, message)
    session = await find_session(request, ctx, service)
    headers = {SESSION_HEADER: session.id}
    if message.kind != "request":
        await on_notification(service, session, message)
        return web.Response(status=202, headers=headers)
    return respond(await answer(ctx, service, session.version, message, session), headers=headers)


async def initialize(ctx: CallContext, service: McpService, message: Message) -> web.Response:
    try:
        version, client_info = service.negotiate(message.params)
    except RpcError as exc:
        ctx.error_code = exc.audit_code
        return respond(error(message.id, exc))
    assert ctx.principal is not None
    try:
        session = await service.sessions.open(ctx.principal.key_id, version, client_info)
    except SessionLimit as exc:
        raise Refusal(503, RpcError(INVALID_REQUEST, str(exc), audit_code="too_many_sessions"),
                      message.id, {"Retry-After": "30"}) from None
    return respond(result(message.id, service.initialize_result(version)),
                   headers={SESSION_HEADER: session.id})


async def handshake_batch(request: web.Request, ctx: CallContext, service: McpService,
                          body: list[Any]) -> web.Response:
    if not body:
        raise Refusal(400, RpcError(INVALID_REQUEST, "Invalid request: empty batch"))
    if any(isinstance(item, dict) and item.get("method") == "initialize" for item in body):
        raise Refusal(400, RpcError(INVALID_REQUEST, "initialize must not be part of a JSON-RPC batch"))
    session = await find_session(request, ctx, service)
    if session.version not in BATCH_VERSIONS:
        raise Refusal(400, RpcError(INVALID_REQUEST, f"JSON-RPC batches are not allowed at protocol version "
                                                     f"{session.version}; send one message per request",
                                    audit_code="batch_refused"))
    if len(body) > MAX_BATCH:
        raise Refusal(400, RpcError(INVALID_REQUEST, f"A batch holds at most {MAX_BATCH} messages",
                                    audit_code="batch_refused"))
    bridge = service.bridge
    assert ctx.principal is not None
    replies: list[dict[str, Any]] = []
    charged = False
    for item in body:
        try:
            message = parse_message(item)
        except RpcError as exc:
            replies.append(error(request_id_of(item), exc))
            continue
        if message.kind == "notification":
            await on_notification(service, session, message)
        elif message.kind == "request":
            if charged and not bridge.limiter.check(ctx.principal.key_id, ctx.principal.rate_limit).allowed:
                replies.append(error(message.id, RpcError(RATE_LIMITED, "Rate limit reached; retry later")))
                continue
            charged = True  # the HTTP request paid for the first; each further request pays its own way
            replies.append(await answer(ctx, service, session.version, message, session))
    headers = {SESSION_HEADER: session.id}
    if not replies:
        return web.Response(status=202, headers=headers)
    return respond(replies, headers=headers)


async def handshake_stream(request: web.Request, ctx: CallContext, service: McpService) -> web.StreamResponse:
    """GET: the session's stream for server notifications (tools/list_changed)."""
    if not accepts(request)[1]:
        raise Refusal(406, RpcError(INVALID_REQUEST, "Not Acceptable: Client must accept text/event-stream"))
    session = await find_session(request, ctx, service)
    if session.streams:
        raise Refusal(409, RpcError(INVALID_REQUEST, "Conflict: Only one SSE stream is allowed per session"))
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    lift_deadline(request)
    with stream_place(ctx, service) as idle:
        session.streams.add(queue)
        try:
            response = web.StreamResponse(headers={**_SSE_HEADERS, SESSION_HEADER: session.id})
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):
                await pump(request, response, queue, idle=idle)
        finally:
            session.streams.discard(queue)
            session.last_used = time.monotonic()
    return response


async def handshake_delete(request: web.Request, ctx: CallContext, service: McpService) -> web.Response:
    session = await find_session(request, ctx, service)
    await service.sessions.close(session)
    return web.Response(status=204)


# ---- per-request era (2026-07-28) ----------------------------------------------------------------
async def modern_post(request: web.Request, ctx: CallContext, service: McpService) -> web.StreamResponse:
    if request.method != "POST":
        raise Refusal(405, RpcError(INVALID_REQUEST, "Method Not Allowed: protocol 2026-07-28 uses POST "
                                    "only"), headers={"Allow": "POST"})
    json_ok, sse_ok = accepts(request)
    if not json_ok:
        raise Refusal(406, RpcError(INVALID_REQUEST, "Not Acceptable: Client must accept application/json"))
    body = await read_body(request, service)
    if isinstance(body, dict) and "id" not in body:
        return modern_notification(request, body)
    try:
        message = parse_message(body)
    except RpcError:
        message = None
    if message is None or message.kind != "request":
        raise Refusal(400, RpcError(INVALID_REQUEST, _INVALID_BODY))
    if message.method == "subscriptions/listen" and not sse_ok:
        raise Refusal(406, RpcError(INVALID_REQUEST, "Not Acceptable: subscriptions/listen answers with "
                                                     "text/event-stream"), message.id)
    duplicated = duplicated_routing_header(request.headers)
    if duplicated is not None:
        raise Refusal(400, RpcError(HEADER_MISMATCH, f"{duplicated} header appears more than once"),
                      message.id)
    try:
        version = check_modern_envelope(message, request.headers)
    except RpcError as exc:
        raise Refusal(MODERN_HTTP_STATUS.get(exc.code, 400), exc, message.id) from None
    if message.method == "subscriptions/listen":
        return await listen(request, ctx, service, message)
    payload = await answer(ctx, service, version, message)
    status = MODERN_HTTP_STATUS.get(payload["error"]["code"], 200) if "error" in payload else 200
    return respond(payload, status)


def modern_notification(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Acknowledged and dropped: the 2026-07-28 wire defines no client notification a server acts on."""
    params = body.get("params")
    if body.get("jsonrpc") != "2.0" or not isinstance(body.get("method"), str) or not (
            params is None or isinstance(params, dict)):
        raise Refusal(400, RpcError(INVALID_REQUEST, _INVALID_BODY))
    requested = request.headers.get(VERSION_HEADER, "")
    if requested not in MODERN_VERSIONS:
        raise Refusal(400, unsupported_version(requested))
    return web.Response(status=202)


async def listen(request: web.Request, ctx: CallContext, service: McpService,
                 message: Message) -> web.StreamResponse:
    """`subscriptions/listen`: an SSE stream that carries tools/list_changed until either side ends it."""
    wanted = message.params.get("notifications")
    if not isinstance(wanted, dict):
        raise Refusal(400, RpcError(INVALID_PARAMS, "subscriptions/listen needs a `notifications` filter "
                                    "object"), message.id)
    honored = {"toolsListChanged": True} if wanted.get("toolsListChanged") is True else {}
    stamp = {SUBSCRIPTION_ID: message.id}
    lift_deadline(request)  # a listen stream is meant to stay open
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    with stream_place(ctx, service, message.id) as idle:
        service.listeners[queue] = bool(honored)
        try:
            response = web.StreamResponse(headers=_SSE_HEADERS)
            await response.prepare(request)
            await response.write(sse_event({"jsonrpc": "2.0",
                                            "method": "notifications/subscriptions/acknowledged",
                                            "params": {"notifications": honored, "_meta": stamp}}))
            with contextlib.suppress(ConnectionResetError):
                await pump(request, response, queue, stamp, idle=idle)
                await response.write(sse_event(result(message.id, {
                    "resultType": "complete", "_meta": {META_SERVER_INFO: SERVER_INFO}})))
        finally:
            service.listeners.pop(queue, None)
    return response


# ---- wiring --------------------------------------------------------------------------------------
async def _on_startup(app: web.Application) -> None:
    app[MCP].start()


async def _on_shutdown(app: web.Application) -> None:
    app[MCP].close()  # ends open streams so a stop does not wait for idle clients


def add_routes(app: web.Application) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Serve MCP at /mcp; returns the handler, which `/` (server.http.oneurl) also hands MCP requests to."""
    service = app[MCP] = McpService(app[BRIDGE])
    handler = endpoint(service)
    app.router.add_route("*", PATH, handler)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    return handler
