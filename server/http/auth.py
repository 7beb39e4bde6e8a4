"""Authentication and per-key limits: the pipeline stages between transport and protocol adapter."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from server.errors import RateLimited, Unauthorized
from server.events import AuthBlocked
from server.http.keys import BRIDGE, context
from server.keys import Principal

log = logging.getLogger("server.auth")
PUBLIC = {("GET", "/health"), ("GET", "/openapi.json")}


def presented_key(request: web.Request) -> str | None:
    """`x-api-key: KEY` or `Authorization: Bearer KEY`; a repeated header is refused as ambiguous."""
    values = request.headers.getall("x-api-key", [])
    auth = request.headers.getall("Authorization", [])
    if len(values) + len(auth) > 1:
        return None
    if values:
        return values[0].strip() or None
    if auth:
        scheme, _, token = auth[0].strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def authenticate(request: web.Request) -> Principal | None:
    """The caller's principal, or None; records failed attempts for per-address throttling."""
    bridge = request.app[BRIDGE]
    client = request["voka.client"]
    presented = presented_key(request)
    principal = bridge.authenticate(presented)
    if principal is None and presented is not None:
        blocked = bridge.auth_throttle.failure(client)
        if blocked:
            log.warning("client blocked after repeated failed authentication",
                        extra={"fields": {"client": client, "seconds": blocked}})
            bridge.events.publish(AuthBlocked(client, blocked))
    elif principal is not None:
        bridge.auth_throttle.success(client)
    return principal


@web.middleware
async def auth_and_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method, request.path) in PUBLIC or request.method == "OPTIONS":
        return await handler(request)
    bridge = request.app[BRIDGE]
    client = request["voka.client"]
    blocked = bridge.auth_throttle.blocked_for(client)
    if blocked:
        raise RateLimited("Too many failed attempts from this address; wait before trying again.",
                          code="auth_throttled", headers={"Retry-After": str(int(blocked) + 1)})
    principal = authenticate(request)
    if principal is None:
        raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="voka-bridge"'})
    context(request).principal = principal
    decision = bridge.limiter.check(principal.key_id, principal.rate_limit)
    headers = decision.headers(bridge.limiter.window)
    if not decision.allowed:
        raise RateLimited(f"Rate limit of {decision.limit} requests per "
                          f"{int(bridge.limiter.window)} s reached; retry in {decision.retry_after} s.",
                          headers=headers)
    response = await handler(request)
    response.headers.update(headers)
    return response
