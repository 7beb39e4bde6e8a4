"""The aiohttp application factory: routes and the one middleware pipeline.

Order matters: the pipeline answers and audits everything; the guard refuses foreign Host names and
bounds each request's time; auth and limits decide who may call; then the protocol adapters.
"""

from __future__ import annotations

import math

from aiohttp import web

from server.bridge import Bridge
from server.http import health, mcp, openapi, rest, security
from server.http.appstate import BRIDGE
from server.http.auth import auth_and_limits
from server.http.deadline import Deadlines
from server.http.oneurl import one_url
from server.http.pipeline import pipeline
from server.ratelimit import ConcurrencyLimiter


def create_app(bridge: Bridge) -> web.Application:
    # Per process: with N workers each holds its share of a key's cap (an asyncio queue cannot be shared).
    workers = bridge.cluster.workers if bridge.cluster else 1
    per_key = bridge.config.rate_limit.max_concurrent_per_key
    concurrency = ConcurrencyLimiter(math.ceil(per_key / workers))
    deadlines = Deadlines()
    app = web.Application(middlewares=[pipeline, security.guard(bridge, deadlines),
                                       auth_and_limits(bridge, concurrency)],
                          client_max_size=bridge.config.limits.max_body_bytes)
    app[BRIDGE] = bridge
    security.install(app, deadlines)
    health.add_routes(app)
    openapi.add_routes(app)
    rest.add_routes(app)
    app.router.add_route("*", "/", one_url(mcp=mcp.add_routes(app), rest=rest.envelope))
    return app
