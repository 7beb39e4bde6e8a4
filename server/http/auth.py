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


def _header_keys(request: web.Request) -> tuple[list[str | None], bool]:
    """What each key header carries (the key, or None for a header without a usable key), and whether
    one of the two headers came more than once (which proxies may each read differently)."""
    api_keys = request.headers.getall("x-api-key", [])
    authorizations = request.headers.getall("Authorization", [])
    keys: list[str | None] = [value.strip() or None for value in api_keys]
    for value in authorizations:
        scheme, _, token = value.strip().partition(" ")
        keys.append(token.strip() or None if scheme.lower() == "bearer" else None)
    return keys, len(api_keys) > 1 or len(authorizations) > 1


def presented_key(request: web.Request) -> str | None:
    """`x-api-key: KEY` or `Authorization: Bearer KEY`, or one of each carrying the same key (some
    clients send both); two different keys, a repeated header, or one without a usable key: refused."""
    keys, repeated = _header_keys(request)
    distinct = set(keys)
    return distinct.pop() if len(distinct) == 1 and not repeated else None


def _refusal_reason(request: web.Request, presented: str | None) -> str:
    """Why auth failed, for the owner's audit log (the caller only ever sees "Unauthorized")."""
    if presented is not None:
        return request.app[BRIDGE].verifier.why_refused(presented)
    keys, repeated = _header_keys(request)
    if not keys:
        return "no key"
    if repeated:
        return "more than one key header of the same name"
    if None in keys:
        return "unusable key header"
    return "two different keys in x-api-key and Authorization"


def authenticate(request: web.Request, bridge: Bridge | None = None) -> Principal | None:
    """The caller's principal, or None.

    The failed-login throttle (SECURITY.md, "Failed logins"): a correct key is always admitted, whatever
    others did from the same address (behind a tunnel, Voka and an attacker may share one); a caller
    without one, from an address that is blocked, gets 429 instead of 401; a wrong key counts against
    its address. A correct key forgives nothing: it cannot launder another caller's failures."""
    bridge = bridge or request.app[BRIDGE]
    client = request[CLIENT]
    presented = presented_key(request)
    principal = bridge.authenticate(presented)
    if principal is not None:
        return principal
    blocked_for = bridge.auth_throttle.blocked_for(client)
    if blocked_for:
        context(request).detail["reason"] = "address blocked after repeated failed authentication"
        raise RateLimited("Too many failed attempts from this address; wait before trying again.",
                          code="auth_throttled", headers={"Retry-After": str(int(blocked_for) + 1)})
    context(request).detail["reason"] = _refusal_reason(request, presented)
    if presented is not None:  # a guess; an ambiguous or missing key confirms nothing and does not count
        blocked = bridge.auth_throttle.failure(client)
        if blocked:
            log.warning("client blocked after repeated failed authentication",
                        extra={"fields": {"client": client, "seconds": blocked}})
            bridge.events.publish(AuthBlocked(client, blocked))
    return None


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
        if ((request.method, request.path) in PUBLIC or request.method == "OPTIONS"
                or request.match_info.http_exception is not None):
            # Public routes, CORS preflights, and addresses with nothing behind them (404/405 before
            # authentication: an MCP client probing /.well-known/oauth-* must learn there is no OAuth
            # here, not start a login flow that can never finish).
            if presented_key(request) is None:
                _limit_anonymous(request)
            return await handler(request)
        principal = authenticate(request, bridge)
        if principal is None:
            if presented_key(request) is None:
                _limit_anonymous(request)
            raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="voka-bridge"'})
        ctx = context(request)
        ctx.principal = principal
        decision = bridge.limiter.check(principal.key_id, principal.rate_limit)
        headers = decision.headers(bridge.limiter.window)
        if not decision.allowed:
            window = bridge.limiter.window
            ctx.detail["reason"] = f"over {decision.limit} requests per {window:g} s"
            raise RateLimited(f"Rate limit of {decision.limit} requests per "
                              f"{int(window)} s reached; retry in {decision.retry_after} s.",
                              headers=headers)
        try:
            slot = ctx.place = concurrency.slot(principal.key_id)
            async with slot:
                response = await handler(request)
        except TooManyInFlight:
            ctx.detail["reason"] = (f"over {concurrency.limit} requests in progress and "
                                    f"{concurrency.max_waiting} waiting")
            raise RateLimited(f"This key already has {concurrency.limit} requests in progress and more "
                              "waiting; slow down.", code="too_many_concurrent",
                              headers={**headers, "Retry-After": "1"}) from None
        if not response.prepared:  # a stream already sent its headers
            response.headers.update(headers)
        return response

    return auth_middleware
