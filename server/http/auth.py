"""Authentication and per-key limits: the pipeline stages between transport and protocol adapter."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from server.bridge import Bridge
from server.errors import RateLimited, Unauthorized
from server.events import AuthBlocked
from server.http.appstate import BRIDGE, CLIENT, context
from server.keys import Principal
from server.ratelimit import ConcurrencyLimiter, TooManyInFlight

log = logging.getLogger("server.auth")
PUBLIC = {("GET", "/health"), ("HEAD", "/health"), ("GET", "/openapi.json")}


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


def _refusal_reason(request: web.Request, presented: str | None) -> str:
    """Why auth failed, for the owner's audit log (the caller only ever sees "Unauthorized")."""
    if presented is not None:
        return request.app[BRIDGE].verifier.why_refused(presented)
    count = len(request.headers.getall("x-api-key", [])) + len(request.headers.getall("Authorization", []))
    if count > 1:
        return "more than one key header"
    return "no key" if count == 0 else "unusable key header"


def authenticate(request: web.Request, bridge: Bridge | None = None) -> Principal | None:
    """The caller's principal, or None; records failed attempts for per-address throttling."""
    bridge = bridge or request.app[BRIDGE]
    client = request[CLIENT]
    presented = presented_key(request)
    principal = bridge.authenticate(presented)
    if principal is None:
        context(request).detail["reason"] = _refusal_reason(request, presented)
    if principal is None and presented is not None:
        blocked = bridge.auth_throttle.failure(client)
        if blocked:
            log.warning("client blocked after repeated failed authentication",
                        extra={"fields": {"client": client, "seconds": blocked}})
            bridge.events.publish(AuthBlocked(client, blocked))
    elif principal is not None:
        bridge.auth_throttle.success(client)
    return principal


def _limit_anonymous(request: web.Request) -> None:
    """Callers without a key share one bucket per address: probes of /health (a database round trip)
    or floods of keyless requests cannot run unbounded. Keyed callers never touch this bucket."""
    bridge = request.app[BRIDGE]
    decision = bridge.limiter.check("address:" + request[CLIENT])
    if not decision.allowed:
        window = bridge.limiter.window
        context(request).detail["reason"] = (f"over {decision.limit} requests per {window:g} s without a key "
                                             "from this address")
        raise RateLimited("Too many requests without an API key from this address; retry in "
                          f"{decision.retry_after} s.", headers=decision.headers(bridge.limiter.window))


def auth_and_limits(bridge: Bridge, concurrency: ConcurrencyLimiter) -> Middleware:
    """The auth and limits middleware for one app (what it needs is bound here, not looked up per
    request)."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.method, request.path) in PUBLIC or request.method == "OPTIONS":
            if presented_key(request) is None:
                _limit_anonymous(request)
            return await handler(request)
        client = request[CLIENT]
        blocked = bridge.auth_throttle.blocked_for(client)
        if blocked:
            context(request).detail["reason"] = "address blocked after repeated failed authentication"
            raise RateLimited("Too many failed attempts from this address; wait before trying again.",
                              code="auth_throttled", headers={"Retry-After": str(int(blocked) + 1)})
        principal = authenticate(request, bridge)
        if principal is None:
            if presented_key(request) is None:
                _limit_anonymous(request)
            raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="voka-bridge"'})
        context(request).principal = principal
        decision = bridge.limiter.check(principal.key_id, principal.rate_limit)
        headers = decision.headers(bridge.limiter.window)
        if not decision.allowed:
            window = bridge.limiter.window
            context(request).detail["reason"] = f"over {decision.limit} requests per {window:g} s"
            raise RateLimited(f"Rate limit of {decision.limit} requests per "
                              f"{int(window)} s reached; retry in {decision.retry_after} s.",
                              headers=headers)
        try:
            async with concurrency.slot(principal.key_id):
                response = await handler(request)
        except TooManyInFlight:
            context(request).detail["reason"] = (f"over {concurrency.limit} requests in progress and "
                                                 f"{concurrency.max_waiting} waiting")
            raise RateLimited(f"This key already has {concurrency.limit} requests in progress and more "
                              "waiting; slow down.", code="too_many_concurrent",
                              headers={**headers, "Retry-After": "1"}) from None
        if not response.prepared:  # a stream already sent its headers
            response.headers.update(headers)
        return response

    return auth_middleware
