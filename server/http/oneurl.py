"""`/`: one URL for whatever Voka speaks. The owner pastes the bare address; Voka's guide shows a bare
server URL, and both of its protocols arrive there.

The request's shape decides: MCP's transport headers (`Mcp-Session-Id`, `MCP-Protocol-Version`, an
`Accept` that takes `text/event-stream`) or a JSON-RPC body (`{"jsonrpc": "2.0", ...}` or a batch) go to the
MCP adapter, with GET and DELETE as the Streamable HTTP transport requires; any other POST is the Voka
envelope (`{"method": "query" | "action", ...}`). Both adapters then run exactly as on `/mcp` and `/query`:
the body is read once, and a body that cannot be read is refused in the REST format unless the headers
already said MCP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from server.http.appstate import BRIDGE
from server.http.body import read_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MCP_HEADERS = ("Mcp-Session-Id", "MCP-Protocol-Version")


def looks_like_mcp(body: Any) -> bool:
    """JSON-RPC 2.0: an object naming `jsonrpc`, or a batch (a list) that starts with one."""
    if isinstance(body, list) and body:
        body = body[0]
    return isinstance(body, dict) and "jsonrpc" in body


def _mcp_headers(request: web.Request) -> bool:
    return (any(name in request.headers for name in _MCP_HEADERS)
            or "text/event-stream" in request.headers.get("Accept", "").lower())


def one_url(mcp: Handler, rest: Handler) -> Handler:
    async def root(request: web.Request) -> web.StreamResponse:
        if request.method != "POST" or _mcp_headers(request):
            return await mcp(request)
        # A body that cannot be read (415, 413, 400) is refused here, in the REST format.
        body = await read_json(request, request.app[BRIDGE].config.limits.max_body_bytes)
        return await (mcp if looks_like_mcp(body) else rest)(request)

    return root
