"""Typed aiohttp app and request state (web.AppKey for the Bridge, the request's CallContext)."""

from __future__ import annotations

from aiohttp import web

from server.bridge import Bridge
from server.executor import CallContext

BRIDGE = web.AppKey("bridge", Bridge)
CONTEXT = "voka.ctx"  # request-scoped CallContext, set by the pipeline


def context(request: web.Request) -> CallContext:
    return request[CONTEXT]  # type: ignore[no-any-return]
