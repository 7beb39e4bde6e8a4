"""`GET /health`: a real database round trip; details only for a caller with a valid key."""

from __future__ import annotations

import datetime as dt
import time

from aiohttp import web

from server import __version__
from server.http.appstate import BRIDGE, context
from server.http.auth import authenticate, presented_key
from server.http.pipeline import json_response


async def health(request: web.Request) -> web.Response:
    bridge = request.app[BRIDGE]
    state = await bridge.check_health()
    payload: dict[str, object] = {"status": "healthy" if state.healthy else "unhealthy",
                                  "timestamp": dt.datetime.now(dt.UTC).isoformat()}
    principal = authenticate(request) if presented_key(request) else None
    if not state.healthy:
        payload["error"] = "database unavailable"
    if principal is not None:
        context(request).principal = principal
        payload.update({
            "version": __version__,
            "database": bridge.database_url.split(":", 1)[0],
            "uptime_seconds": round(time.time() - bridge.started_at),
            "tools": len(bridge.catalog),
        })
        if not state.healthy:
            payload["error"] = state.detail
    return json_response(payload, 200 if state.healthy else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
