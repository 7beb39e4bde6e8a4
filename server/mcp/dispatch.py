"""MCP methods → the shared tool executor: one dispatcher for both protocol eras.

The HTTP adapter (server/http/mcp.py) decides the era, the session and the HTTP status; this module
decides what each method means and returns plain dicts, so the two eras cannot answer differently.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server import __version__
from server.bridge import Bridge
from server.errors import BridgeError
from server.events import CatalogReloaded
from server.executor import CallContext
from server.handoff import Shares
from server.mcp import resources
from server.mcp.protocol import (
    HANDSHAKE_VERSIONS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LATEST_HANDSHAKE,
    META_SERVER_INFO,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    RpcError,
)
from server.mcp.sessions import SessionStore, SharedSessionStore
from server.mcp.tools import McpTools

log = logging.getLogger(__name__)

SERVER_INFO: dict[str, Any] = {"name": "voka-bridge", "title": "Voka Bridge", "version": __version__}
INSTRUCTIONS = ("Voka Bridge answers from the business's own database. Use the tools to look things up "
                "(queries never change anything) or to record something (actions). The resource "
                f"{resources.SCHEMA_URI} describes the tables and columns.")
HANDSHAKE_METHODS = frozenset({"initialize", "ping", "tools/list", "tools/call", "resources/list",
                               "resources/read", "resources/templates/list"})
MODERN_METHODS = frozenset({"server/discover", "tools/list", "tools/call", "resources/list", "resources/read",
                            "resources/templates/list", "subscriptions/listen"})
CACHEABLE = frozenset({"tools/list", "resources/list", "resources/read", "resources/templates/list",
                       "server/discover"})
LIST_CHANGED: dict[str, Any] = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


def capabilities() -> dict[str, Any]:
    return {"tools": {"listChanged": True}, "resources": {}}


class McpService:
    """The MCP server state that outlives one request: sessions, the tool view, change notifications."""

    def __init__(self, bridge: Bridge, sessions: SessionStore | None = None) -> None:
        self.bridge = bridge
        if sessions is None:  # several workers share their sessions through state.sqlite3
            sessions = (SharedSessionStore(lambda: bridge.state, bridge.on_state) if bridge.cluster
                        else SessionStore())
        self.sessions = sessions
        self.tools = McpTools(bridge.executor)
        # Open event streams per key ([rate_limit] max_streams_per_key): places apart from request places.
        # Shares without a capacity: no key ever holds more than its share, and a key over it is refused.
        self.stream_places: Shares[str] = Shares(bridge.config.rate_limit.max_streams_per_key)
        # 2026-07-28 listen streams -> whether each asked for tools/list_changed
        self.listeners: dict[asyncio.Queue[dict[str, Any] | None], bool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._upkeep: asyncio.Task[None] | None = None
        self._unsubscribe = bridge.events.subscribe(self._on_event, CatalogReloaded)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._upkeep = self._loop.create_task(self.sessions.run(), name="mcp-sessions")

    def close(self) -> None:
        if self._upkeep is not None:
            self._upkeep.cancel()
            self._upkeep = None
        self._unsubscribe()
        self.sessions.end_all()
        for queue in self.listeners:
            queue.put_nowait(None)

    def _on_event(self, event: Any) -> None:
        if not isinstance(event, CatalogReloaded):
            return
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self.tools_changed()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self.tools_changed)

    def tools_changed(self) -> None:
        """Tell every client with an open stream that the tool list changed (the owner edited the catalog)."""
        reached = self.sessions.broadcast(LIST_CHANGED)
        for queue, wanted in self.listeners.items():
            if wanted:
                queue.put_nowait(LIST_CHANGED)
        log.info("tools changed; notified open MCP streams",
                 extra={"fields": {"sessions": reached, "listeners": len(self.listeners)}})

    # ---- methods -----------------------------------------------------------------------------
    @staticmethod
    def negotiate(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Check `initialize` params; the version we answer with and the client's info."""
        requested = params.get("protocolVersion")
        client_info = params.get("clientInfo")
        if not isinstance(requested, str) or not isinstance(params.get("capabilities"), dict) \
                or not isinstance(client_info, dict) or not isinstance(client_info.get("name"), str) \
                or not isinstance(client_info.get("version"), str):
            raise RpcError(INVALID_PARAMS, "initialize needs protocolVersion (string), capabilities (object) "
                                           "and clientInfo {name, version}")
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
        return version, {"name": client_info["name"][:100], "version": client_info["version"][:50]}

    @staticmethod
    def initialize_result(version: str) -> dict[str, Any]:
        return {"protocolVersion": version, "capabilities": capabilities(), "serverInfo": SERVER_INFO,
                "instructions": INSTRUCTIONS}

    async def call(self, ctx: CallContext, version: str, method: str,
                   params: dict[str, Any]) -> dict[str, Any]:
        """Run one request method (not `initialize`, which the transport handles with the session)."""
        modern = version in MODERN_VERSIONS
        if method not in (MODERN_METHODS if modern else HANDSHAKE_METHODS) or method == "initialize":
            raise RpcError(METHOD_NOT_FOUND, "Method not found")  # never the caller's text back
        principal = ctx.principal
        assert principal is not None
        try:
            if method == "tools/call":
                result = await self.tools.call(ctx, params)
            elif method == "tools/list":
                result = self.tools.list_page(principal, params.get("cursor"))
            elif method == "resources/list":
                result = resources.list_resources()
            elif method == "resources/read":
                result = await resources.read_resource(self.bridge, params, version)
            elif method == "resources/templates/list":
                result = {"resourceTemplates": []}
            elif method == "server/discover":
                result = {"supportedVersions": list(MODERN_VERSIONS), "capabilities": capabilities(),
                          "instructions": INSTRUCTIONS}
            else:  # ping
                result = {}
        except BridgeError as exc:
            raise RpcError(INTERNAL_ERROR, exc.message, audit_code=exc.code) from None
        if modern:
            return finish_modern(method, result)
        return result


def finish_modern(method: str, result: dict[str, Any]) -> dict[str, Any]:
    """The 2026-07-28 result envelope: resultType, cache hints, and the serverInfo stamp."""
    result["resultType"] = "complete"
    if method in CACHEABLE:
        result["ttlMs"] = 0
        result["cacheScope"] = "private"
    result["_meta"] = {**result.get("_meta", {}), META_SERVER_INFO: SERVER_INFO}
    return result
