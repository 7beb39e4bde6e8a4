"""Transport guards in the one pipeline: the Host check, the per-request deadline, and response headers.

The guard middleware sits between the pipeline (which answers and audits every refusal) and auth, so a
request for a foreign Host never reaches key checking, and a request that stalls (a body trickling in
byte by byte, a handler that hangs) is answered and audited instead of holding a connection forever.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import istr

from server.bridge import Bridge
from server.config import ServerSettings
from server.errors import BridgeError, Forbidden
from server.http.appstate import context
from server.http.deadline import Deadline, Deadlines

log = logging.getLogger("server.security")

HSTS = "max-age=31536000"
_HEADERS = {istr(name): value for name, value in {  # istr: case-folded once, not on every response
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
}.items()}
_LOOPBACK_NAMES = ("localhost", "*.localhost")
DEADLINE = web.RequestKey("voka.deadline", Deadline)
DEADLINES = web.AppKey("deadlines", Deadlines)
_WARNED_HOSTS = web.AppKey("warned_hosts", set[str])


class RequestTimeout(BridgeError):
    status, code = 408, "request_timeout"


def _host_name(value: str) -> str:
    """The name part of a Host header value (`[::1]:3000` → `::1`, `Shop.Example:443` → `shop.example`)."""
    value = value.strip().lower().rstrip(".")
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def allowed_hosts(settings: ServerSettings) -> list[str]:
    """Host names a loopback-bound server answers to: loopback ones plus what the owner configured."""
    names = [*_LOOPBACK_NAMES, settings.host]
    for url in [settings.public_url, *settings.allowed_origins]:
        host = urlsplit(url).hostname if url else None
        if host:
            names.append(host)
    return [n.strip().lower().rstrip(".") for n in dict.fromkeys(names) if n.strip()]


def host_allowed(host_header: str, patterns: list[str]) -> bool:
    name = _host_name(host_header)
    try:
        if ipaddress.ip_address(name).is_loopback:
            return True
    except ValueError:
        pass
    for pattern in patterns:
        if pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


@functools.lru_cache(maxsize=1024)
def _answers_to(host: str, bind_host: str, public_url: str, origins: tuple[str, ...]) -> bool:
    """host_allowed for the current settings, remembered: the same few Host values arrive all day."""
    settings = ServerSettings(host=bind_host, public_url=public_url, allowed_origins=list(origins))
    return host_allowed(host, allowed_hosts(settings))


def lift_deadline(request: web.Request) -> None:
    """A response that streams on purpose (an MCP event stream) lives as long as its client wants."""
    deadline: Deadline | None = request.get(DEADLINE)
    if deadline is not None:
        deadline.lift()


def guard(bridge: Bridge, deadlines: Deadlines) -> Middleware:
    """The guard middleware for one app (what it needs is bound here, not looked up per request)."""

    @web.middleware
    async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        settings = bridge.config.server
        host = request.headers.get("Host")
        if settings.is_loopback and host is not None and not _answers_to(
                host, settings.host, settings.public_url, tuple(settings.allowed_origins)) and not (
                bridge.tunnel_ingress is not None and bridge.tunnel_ingress.answers_to(request, host)):
            _warn_host(request.app, host)
            context(request).detail["reason"] = "host not allowed"
            raise Forbidden("This server does not answer to that host name. If a tunnel or proxy forwards "
                            "to it, set [server] public_url in config.toml to the public address.",
                            code="host_not_allowed")
        limit = bridge.config.limits.request_timeout_seconds
        try:
            async with deadlines.limit(limit) as deadline:
                request[DEADLINE] = deadline
                return await handler(request)
        except TimeoutError:
            context(request).detail["reason"] = f"no answer within {limit:g} s"
            if not request.content.is_eof():
                raise RequestTimeout(f"The request body did not arrive within {limit:g} seconds.") from None
            raise BridgeError(f"The request took longer than {limit:g} seconds and was stopped.",
                              code="request_timeout", status=504) from None

    return guard_middleware


def _warn_host(app: web.Application, host: str) -> None:
    """Logged once per host name (bounded), not per request: a rebinding page may retry in a loop."""
    warned = app[_WARNED_HOSTS]
    name = _host_name(host)[:100]
    if name not in warned and len(warned) < 100:
        warned.add(name)
        log.warning("refused a request for a host name this server does not answer to (possible DNS "
                    "rebinding, or a tunnel that needs [server] public_url)",
                    extra={"fields": {"host": name}})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, errors and streams included: no sniffing, framing, caching; HSTS over TLS."""
    headers = response.headers
    if headers.get("Content-Type", "").startswith("text/event-stream"):
        lift_deadline(request)
    headers.update(_HEADERS)  # no handler sets these
    headers.setdefault("Cache-Control", "no-store")
    headers["Server"] = "voka-bridge"
    if request.secure:
        headers["Strict-Transport-Security"] = HSTS


def install(app: web.Application, deadlines: Deadlines) -> None:
    """Attach the response-header hook and the deadline watchdog's cleanup; the guard middleware itself
    is listed in app.create_app."""
    app[_WARNED_HOSTS] = set()
    app[DEADLINES] = deadlines
    app.on_response_prepare.append(_security_headers)
    app.on_cleanup.append(_stop_deadlines)


async def _stop_deadlines(app: web.Application) -> None:
    await app[DEADLINES].stop()
