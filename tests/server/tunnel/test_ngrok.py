"""ngrok: the real agent SDK imported and configured (it cannot reach ngrok from here), and end to end
through a stand-in with the same interface whose edge adds X-Forwarded-For as ngrok does: the official MCP
SDK client and a Voka-format client both work through it, and the audit shows the caller's address."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx2
import ngrok
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from server.secretstore import SecretStore
from server.tunnel import secrets
from server.tunnel.ngrok import MISSING_TOKEN, REFUSED_TOKEN, NgrokTunnel, explain
from server.tunnel.provider import TunnelProblem, TunnelSpec
from tests.conftest import free_port
from tests.server.tunnel.conftest import NGROK_CLIENT, audit_rows, until

KNOWN_PHONE = "+15558594448"


@pytest.fixture
def no_ngrok_token(monkeypatch):
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    SecretStore().delete(secrets.ACCOUNTS["ngrok"])


def spec(tmp_path, domain: str = "") -> TunnelSpec:
    return TunnelSpec("ngrok", domain, f"http://127.0.0.1:{free_port()}", tmp_path)


# ---- the real SDK ---------------------------------------------------------------------------------
async def test_without_an_authtoken_the_owner_is_told_where_to_get_one(tmp_path, no_ngrok_token):
    tunnel = NgrokTunnel(spec(tmp_path))
    with pytest.raises(TunnelProblem) as caught:
        await tunnel.open(lambda *_: None)
    assert caught.value.permanent and caught.value.message == MISSING_TOKEN
    assert "dashboard.ngrok.com" in MISSING_TOKEN and "voka-bridge tunnel token ngrok" in MISSING_TOKEN
    await tunnel.close()


async def test_the_real_sdk_is_configured_and_an_unreachable_service_is_retried(tmp_path, no_ngrok_token):
    secrets.store("ngrok", "ngrok config add-authtoken 2bogusAuthtoken_ForTheTestOnly1234567")
    try:
        tunnel = NgrokTunnel(spec(tmp_path, "shop.ngrok.app"), server_addr=f"127.0.0.1:{free_port()}")
        builder = tunnel.builder(ngrok, "2bogusAuthtoken_ForTheTestOnly1234567")
        assert isinstance(builder, ngrok.SessionBuilder)
        with pytest.raises(TunnelProblem) as caught:
            await tunnel.open(lambda *_: None)
        await tunnel.close()
    finally:
        secrets.delete("ngrok")
    assert not caught.value.permanent
    assert caught.value.message.startswith("Cannot reach ngrok's service; is this PC online?")


async def test_missing_token_through_the_server_is_a_failed_tunnel_not_a_retry_loop(make_tunnelled, no_ngrok_token):
    server, events = await make_tunnelled({"provider": "ngrok", "domain": "shop.ngrok.app"})
    failed = await events.wait_for(lambda e: e.state == "failed")
    assert failed.provider == "ngrok" and failed.message == MISSING_TOKEN
    assert server.host.tunnels.supervisor.running is False
    async with server.session.get(server.url + "/health") as response:  # this PC is still served
        assert response.status == 200


def test_ngroks_errors_become_plain_words():
    refused = explain(ValueError("failed to connect session", "authentication failed: ERR_NGROK_107 ..."))
    assert refused.permanent and refused.message.startswith(REFUSED_TOKEN)
    busy = explain(ValueError("failed to connect session", "ERR_NGROK_108 limited to 1 simultaneous session"))
    assert busy.permanent and "free plan allows one at a time" in busy.message
    domain = explain(ValueError("failed to start listener", "ERR_NGROK_320: domain is reserved elsewhere"),
                     "shop.ngrok.app")
    assert domain.permanent and "shop.ngrok.app" in domain.message and "Domains" in domain.message
    offline = explain(ValueError("failed to connect session", "failed to establish tcp connection"))
    assert not offline.permanent


# ---- end to end through the stand-in --------------------------------------------------------------
@asynccontextmanager
async def mcp_client(url: str, key: str, mode: str):
    async with httpx2.AsyncClient(headers={"x-api-key": key}) as http, \
            Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_sdk_client_and_voka_client_through_the_tunnel(make_tunnelled, stand_in_ngrok, mode):
    server, events = await make_tunnelled({"provider": "ngrok"})
    up = await events.wait_for(lambda e: e.state == "up")
    public = up.public_url
    key = server.keys["voka"]
    async with mcp_client(public + "/mcp", key, mode) as client:
        found = await client.call_tool("find_customer_by_phone", {"phone": KNOWN_PHONE})
        assert found.is_error is False and found.structured_content["rows"][0]["name"] == "Ava Martin"
    async with server.session.post(public + "/query", json={
            "name": "find_customer_by_phone", "params": {"phone": KNOWN_PHONE}},
            headers={"x-api-key": key, "X-Forwarded-For": "6.6.6.6"}) as response:  # ngrok appends the real one
        assert response.status == 200 and (await response.json())["data"][0]["name"] == "Ava Martin"
    rows = await audit_rows(server)
    mcp_rows = [r for r in rows if r["protocol"] == "mcp"]
    assert mcp_rows and {r["client"] for r in mcp_rows} == {NGROK_CLIENT}
    voka = [r for r in rows if r["route"] == "/query"]
    assert [r["client"] for r in voka] == [NGROK_CLIENT]


# The lead makes `POST /` answer MCP JSON-RPC as well as the Voka envelope ("one URL", issue 14 item 3):
# the same client pointed at the bare public URL.
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_sdk_client_and_voka_envelope_at_the_bare_public_url(make_tunnelled, stand_in_ngrok, mode):
    server, events = await make_tunnelled({"provider": "ngrok"})
    public = (await events.wait_for(lambda e: e.state == "up")).public_url
    key = server.keys["voka"]
    async with mcp_client(public + "/", key, mode) as client:
        stock = await client.call_tool("check_inventory", {"product_id": "JKT-BLU-M"})
        assert stock.structured_content["rows"][0]["quantity"] == 3
    async with server.session.post(public + "/", json={"method": "query", "params": {
            "name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}},
            headers={"x-api-key": key}) as response:
        assert response.status == 200 and (await response.json())["data"][0]["quantity"] == 3
    assert {r["client"] for r in await audit_rows(server) if r["route"] == "/"} == {NGROK_CLIENT}


async def test_a_direct_caller_cannot_borrow_a_tunnel_address(make_tunnelled, stand_in_ngrok):
    server, events = await make_tunnelled({"provider": "ngrok"}, {"trust_forwarded_for": False})
    await events.wait_for(lambda e: e.state == "up")
    async with server.session.post(server.url + "/query", json={"query": "SELECT 1"}, headers={
            "x-api-key": "vbk_000000000000_wrong", "X-Forwarded-For": NGROK_CLIENT,
            "CF-Connecting-IP": NGROK_CLIENT}) as response:
        assert response.status == 401
    rows = [r for r in await audit_rows(server) if r["route"] == "/query"]
    assert rows[0]["client"] == "127.0.0.1"


async def test_the_reachability_probe_follows_the_tunnels_public_address(make_tunnelled, stand_in_ngrok):
    server, events = await make_tunnelled({"provider": "ngrok"}, {"check_public_url": True})
    up = await events.wait_for(lambda e: e.state == "up")
    bridge = server.bridge
    await until(lambda: bridge.reachability is not None and bridge.reachability.url == up.public_url)
    result = await bridge.check_reachability()
    assert result is not None and result.reachable and result.url == up.public_url
    health = [r for r in await audit_rows(server) if r["route"] == "/health"]
    assert health and health[0]["client"] == NGROK_CLIENT  # the probe went out and came back through it
    # the session drops: the supervisor restarts it, the probe follows the new address
    stand_in_ngrok.instances[-1].lost.set()
    second = await events.wait_for(lambda e: e.state == "up" and e.public_url != up.public_url)
    await until(lambda: bridge.reachability.url == second.public_url)
    await server.host.tunnels.stop()
    assert bridge.reachability is None  # no [server] public_url to go back to


async def test_an_attacker_behind_the_same_tunnel_never_locks_voka_out(make_tunnelled, stand_in_ngrok):
    """Through the tunnel, every caller here has the stand-in edge's one client address: the attacker's
    failures block that address, and Voka's correct key is still answered (SECURITY.md, Failed logins)."""
    server, events = await make_tunnelled({"provider": "ngrok"})
    up = await events.wait_for(lambda e: e.state == "up")
    voka = server.keys["voka"]
    lookup = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}
    statuses = []
    for i in range(14):
        async with server.session.post(up.public_url + "/query", json=lookup,
                                       headers={"x-api-key": f"vbk_{i:012x}_guess"}) as response:
            statuses.append(response.status)
    assert statuses[:10] == [401] * 10 and statuses[-1] == 429  # the attacker is throttled
    for _ in range(3):
        async with server.session.post(up.public_url + "/query", json=lookup,
                                       headers={"x-api-key": voka}) as response:
            assert response.status == 200  # Voka, from the same tunnel address, is not
    rows = [r for r in await audit_rows(server) if r["route"] == "/query"]
    assert {r["client"] for r in rows} == {NGROK_CLIENT}
    assert sorted(r["status"] for r in rows).count(200) == 3
