"""One URL: the bare address answers the Voka format and MCP (both eras) alike; key headers may agree;
addresses with nothing behind them are 404 before authentication; a correct key is never throttled."""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from server.http.oneurl import looks_like_mcp
from tests.conftest import RunningServer

INVENTORY = {"method": "query", "params": {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}}


async def audit_rows(server: RunningServer) -> list[dict[str, Any]]:
    await server.bridge.audit.flush()
    return await server.bridge.on_state(server.bridge.audit.recent, 200)


@pytest.mark.parametrize("url_tail", ["", "/"])
@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
async def test_the_official_mcp_client_works_at_the_bare_url(server: RunningServer, url_tail: str, mode: str,
                                                             version: str) -> None:
    async with httpx2.AsyncClient(headers={"x-api-key": server.keys["writer"]}) as http, \
            Client(streamable_http_client(server.url + url_tail, http_client=http), mode=mode) as client:
        assert client.protocol_version == version
        assert {t.name for t in (await client.list_tools()).tools} >= {"check_inventory", "create_order"}
        stock = await client.call_tool("check_inventory", {"product_id": "JKT-BLU-M"})
        assert stock.is_error is False and stock.structured_content["rows"][0]["quantity"] == 3
    rows = [r for r in await audit_rows(server) if r["route"] == "/" and r["tool"] == "check_inventory"]
    assert rows and rows[-1]["status"] == 200


async def test_the_voka_envelope_still_works_at_the_bare_url(server: RunningServer) -> None:
    status, body, _ = await server.post("/", INVENTORY, key=server.keys["reader"])
    assert status == 200 and body["data"][0]["product_id"] == "JKT-BLU-M"
    status, body, _ = await server.post("/", {"method": "list"}, key=server.keys["reader"])
    assert (status, body["code"]) == (400, "invalid_method")


async def test_handshake_sessions_at_the_bare_url_get_and_delete(server: RunningServer) -> None:
    headers = {"x-api-key": server.keys["reader"], "Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "probe", "version": "1"}}}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/", json=init, headers=headers) as response:
            assert response.status == 200
            session = response.headers["Mcp-Session-Id"]
            assert (await response.json())["result"]["serverInfo"]["name"] == "voka-bridge"
        async with http.get(server.url + "/", headers={**headers, "Mcp-Session-Id": session,
                                                       "MCP-Protocol-Version": "2025-06-18"}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
        async with http.delete(server.url + "/", headers={**headers, "Mcp-Session-Id": session,
                                                          "MCP-Protocol-Version": "2025-06-18"}) as response:
            assert response.status in (200, 204)
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        async with http.post(server.url + "/", json=ping, headers={
                **headers, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}) as response:
            assert response.status == 404  # the session is gone


def test_the_shape_decides_the_protocol() -> None:
    assert looks_like_mcp({"jsonrpc": "2.0", "method": "initialize", "id": 1})
    assert looks_like_mcp([{"jsonrpc": "2.0", "method": "ping", "id": 1}])
    assert not looks_like_mcp({"method": "query", "params": {}})
    assert not looks_like_mcp([])
    assert not looks_like_mcp([1, 2])


# ---- key headers -------------------------------------------------------------------------------
async def test_the_same_key_in_both_headers_is_accepted(server: RunningServer) -> None:
    key = server.keys["reader"]
    status, _, _ = await server.post("/query", INVENTORY["params"],
                                     headers={"x-api-key": key, "Authorization": f"Bearer {key}"})
    assert status == 200


async def test_two_different_keys_are_refused_and_the_audit_says_why(server: RunningServer) -> None:
    status, body, _ = await server.post("/query", INVENTORY["params"], headers={
        "x-api-key": server.keys["reader"], "Authorization": f"Bearer {server.keys['writer']}"})
    assert (status, body) == (401, {"success": False, "error": "Unauthorized", "code": "unauthorized"})
    rows = await audit_rows(server)
    assert rows[-1]["detail"] == "two different keys in x-api-key and Authorization"


# ---- 404 before authentication -----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server",
                                  "/.well-known/openid-configuration", "/mcp/extra", "/admin"])
async def test_unknown_addresses_are_404_before_authentication(server: RunningServer, path: str) -> None:
    status, body, response = await server.get(path)
    assert (status, body["code"]) == (404, "not_found")
    assert "WWW-Authenticate" not in response.headers


# ---- the failed-login throttle never refuses a correct key --------------------------------------
async def test_an_attackers_failures_never_lock_out_a_correct_key(make_server) -> None:  # type: ignore[no-untyped-def]
    running = await make_server({"rate_limit": {"failed_auth_per_minute": 3}})
    voka = await running.create_key("voka", ("query",))
    statuses = [(await running.post("/query", INVENTORY["params"], key=f"vbk_guess{i}_xxxx"))[0] for i in range(8)]
    assert statuses[:4] == [401] * 4 and set(statuses[4:]) == {429}  # the attacker is blocked
    for _ in range(5):  # Voka, from the same address, is not
        assert (await running.post("/query", INVENTORY["params"], key=voka))[0] == 200
    assert (await running.post("/query", INVENTORY["params"], key="vbk_again_xxxx"))[0] == 429  # not forgiven
