"""Typed aiohttp app and request state: web.AppKey for the Bridge, web.RequestKey for what the pipeline
keeps per request (its CallContext, the caller's address, the raw body for the audit preview)."""

from __future__ import annotations

from aiohttp import web

from server.bridge import Bridge
from server.executor import CallContext

BRIDGE = web.AppKey("bridge", Bridge)
CONTEXT = web.RequestKey("voka.ctx", CallContext)  # set by the pipeline
CLIENT = web.RequestKey("voka.client", str)  # the caller's address (after a trusted proxy's header)
BODY = web.RequestKey("voka.body", bytes)  # the raw body, once read


def context(request: web.Request) -> CallContext:
    return request[CONTEXT]
