"""The aiohttp application factory: routes and the one middleware pipeline."""

from __future__ import annotations

from aiohttp import web

from server.bridge import Bridge
from server.http import health, mcp, rest
from server.http.auth import auth_and_limits
from server.http.keys import BRIDGE
from server.http.pipeline import pipeline


def create_app(bridge: Bridge) -> web.Application:
    app = web.Application(middlewares=[pipeline, auth_and_limits],
                          client_max_size=bridge.config.limits.max_body_bytes)
    app[BRIDGE] = bridge
    health.add_routes(app)
    rest.add_routes(app)
    mcp.add_routes(app)
    return app
