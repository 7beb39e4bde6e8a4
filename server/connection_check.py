""""Test the connection": call this server through the address Voka is given, the way Voka will.

The owner pastes one URL into Voka. This goes out through that URL (the tunnel's public address, so the
whole path is tested: DNS, the provider, the tunnel, our ingress) and asks, with the key Voka is given:
is it our server, does the Voka request format work, does MCP work. Each answer is one plain sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from server.mcp.protocol import LATEST_HANDSHAKE

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ProtocolCheck:
    name: str  # what the owner reads: "Reachable", "Voka request format", "MCP"
    ok: bool
    detail: str


def _refusal(status: int, what: str) -> str:
    if status == 401:
        return f"{what}: the API key was refused (401). Copy the key again into Voka."
    if status == 403:
        return f"{what}: this key may not make that call (403)."
    if status == 429:
        return f"{what}: refused for now, too many requests (429)."
    return f"{what}: answered HTTP {status}."


async def _health(http: aiohttp.ClientSession, url: str) -> ProtocolCheck:
    name = "Reachable"
    try:
        async with http.get(url + "/health") as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None  # a tunnel's own error page
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return ProtocolCheck(name, False, f"{url} does not answer ({type(exc).__name__}). Is the tunnel up?")
    if isinstance(body, dict) and body.get("status") in ("healthy", "unhealthy"):
        healthy = body["status"] == "healthy"
        return ProtocolCheck(name, True, f"{url} leads to this Voka Bridge"
                             + ("." if healthy else ", but its database is down."))
    return ProtocolCheck(name, False, f"{url} answers HTTP {response.status}, but not from Voka Bridge.")


async def _voka_format(http: aiohttp.ClientSession, url: str, key: str) -> ProtocolCheck:
    """An envelope that names no tool: our server checks the key first, then says which field is missing
    (400 missing_tool), so the answer proves path and key without running anything."""
    name = "Voka request format"
    try:
        async with http.post(url + "/", json={"method": "query", "params": {}},
                             headers={"x-api-key": key}) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return ProtocolCheck(name, False, f"no answer ({type(exc).__name__}).")
    if response.status == 400 and isinstance(body, dict) and body.get("code") == "missing_tool":
        return ProtocolCheck(name, True, "works: Voka's query and action calls reach your tools.")
    return ProtocolCheck(name, False, _refusal(response.status, "does not work"))


async def _mcp(http: aiohttp.ClientSession, url: str, key: str) -> ProtocolCheck:
    """The MCP handshake at the bare URL, then the tool list; the session is closed again."""
    name = "MCP"
    version = LATEST_HANDSHAKE
    headers = {"x-api-key": key, "Accept": "application/json, text/event-stream"}
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "voka-bridge-connection-test", "version": "1"}}}
    try:
        async with http.post(url + "/", json=initialize, headers=headers) as response:
            body: Any = await response.json(content_type=None)
            session = response.headers.get("Mcp-Session-Id", "")
        if response.status != 200 or not isinstance(body, dict) or "result" not in body:
            return ProtocolCheck(name, False, _refusal(response.status, "does not work"))
        headers = {**headers, "Mcp-Session-Id": session, "MCP-Protocol-Version": version}
        async with http.post(url + "/", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                             headers=headers) as response:
            listed: Any = await response.json(content_type=None)
        async with http.delete(url + "/", headers=headers):
            pass
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return ProtocolCheck(name, False, f"no answer ({type(exc).__name__}).")
    tools = listed.get("result", {}).get("tools") if isinstance(listed, dict) else None
    if not isinstance(tools, list):
        return ProtocolCheck(name, False, _refusal(response.status, "connects, but the tool list failed"))
    return ProtocolCheck(name, True, f"works: MCP clients see {len(tools)} tool(s).")


async def check_connection(url: str, key: str, *, timeout: float = TIMEOUT_SECONDS) -> list[ProtocolCheck]:
    """Reachable?, then both protocols (skipped when the address leads nowhere)."""
    url = url.strip().rstrip("/")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout),
                                     connector=aiohttp.TCPConnector(force_close=True)) as http:
        reach = await _health(http, url)
        if not reach.ok:
            return [reach]
        return [reach, await _voka_format(http, url, key), await _mcp(http, url, key)]
