"""Idempotency on every path Voka can use (DESIGN section 10): `/action`, the envelope at `/`, and MCP
`tools/call` in both eras (the `Idempotency-Key` header, or `params._meta["voka/idempotencyKey"]`).

A retry makes no second order and says it is a replay (`Idempotent-Replayed: true`, or
`result._meta["voka/replayed"]`); the same key with other arguments is refused and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.server.http.test_mcp_client import connect
from tests.server.http.test_mcp_protocol import ACCEPT, META, call, modern_headers, open_session
from tests.server.http.test_rest import snapshot, stock

ITEM = "SWT-NVY-M"
ARGS = {"customer_id": 3, "items": [{"product_id": ITEM, "quantity": 1}]}
OTHER_ARGS = {"customer_id": 4, "items": [{"product_id": ITEM, "quantity": 1}]}


def orders(server: RunningServer) -> int:
    import sqlite3

    conn = sqlite3.connect(server.bridge.paths.demo_db)
    try:
        return conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    finally:
        conn.close()


def tool_call(args: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "create_order", "arguments": args}
    if meta is not None:
        params["_meta"] = meta
    return params


@pytest.mark.parametrize("form", ["header", "meta"])
async def test_two_mcp_calls_with_one_key_make_one_order_and_the_second_says_replayed(server, form):
    key = server.keys["writer"]
    session = await open_session(server, key)
    before_stock, before_orders = stock(server, ITEM), orders(server)
    answers = []
    for request_id in (1, 2):
        headers = {**ACCEPT, "Mcp-Session-Id": session}
        meta = None
        if form == "header":
            headers["Idempotency-Key"] = "voka-call-42"
        else:
            meta = {"voka/idempotencyKey": "voka-call-42"}
        status, body, _ = await server.post("/mcp", {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                                                     "params": tool_call(ARGS, meta)}, key=key, headers=headers)
        assert status == 200, body
        answers.append(body["result"])
    first, second = answers
    assert first["isError"] is False and "_meta" not in first
    assert second["isError"] is False and second["_meta"] == {"voka/replayed": True}
    assert second["structuredContent"] == first["structuredContent"]
    assert (stock(server, ITEM), orders(server)) == (before_stock - 1, before_orders + 1)


async def test_the_per_request_era_at_the_bare_url_replays_with_its_server_info(server):
    key = server.keys["writer"]
    before = orders(server)
    results = []
    for request_id in (1, 2):
        body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": tool_call(ARGS, {**META, "voka/idempotencyKey": "modern-1"})}
        status, payload, _ = await server.post("/", body, key=key,
                                               headers=modern_headers("tools/call", "create_order"))
        assert status == 200, payload
        results.append(payload["result"])
    assert orders(server) == before + 1
    assert "voka/replayed" not in results[0]["_meta"]
    assert results[1]["_meta"]["voka/replayed"] is True
    assert "io.modelcontextprotocol/serverInfo" in results[1]["_meta"]
    assert results[1]["structuredContent"] == results[0]["structuredContent"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_official_sdk_client_sends_the_key_in_meta(server, mode):
    before = orders(server)
    async with connect(server, server.keys["writer"], mode) as client:
        first = await client.call_tool("create_order", ARGS, meta={"voka/idempotencyKey": f"sdk-{mode}"})
        second = await client.call_tool("create_order", ARGS, meta={"voka/idempotencyKey": f"sdk-{mode}"})
    assert not first.is_error and not second.is_error
    assert orders(server) == before + 1
    assert (second.meta or {}).get("voka/replayed") is True
    assert (first.meta or {}).get("voka/replayed") is None
    assert second.structured_content == first.structured_content


async def test_the_envelope_at_the_bare_url_takes_the_header(server):
    key = server.keys["writer"]
    envelope = {"method": "action", "params": {"action": "create_order", "params": ARGS}}
    before = orders(server)
    first = await server.post("/", envelope, key=key, headers={"Idempotency-Key": "env-1"})
    second = await server.post("/", envelope, key=key, headers={"Idempotency-Key": "env-1"})
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert "Idempotent-Replayed" not in first[2].headers
    assert second[2].headers["Idempotent-Replayed"] == "true"
    assert orders(server) == before + 1


async def test_rest_replay_says_so_and_the_key_spans_protocols(server):
    """The key belongs to the API key and the call, not to the protocol: an MCP retry of a REST call is a
    replay too."""
    key = server.keys["writer"]
    before = orders(server)
    status, body, response = await server.post("/action", {"action": "create_order", "params": ARGS}, key=key,
                                               headers={"Idempotency-Key": "cross-1"})
    assert status == 200 and "Idempotent-Replayed" not in response.headers
    session = await open_session(server, key)
    status, payload = await call(server, key, session, "tools/call",
                                 tool_call(ARGS, {"voka/idempotencyKey": "cross-1"}))
    assert status == 200 and payload["result"]["_meta"] == {"voka/replayed": True}
    assert payload["result"]["structuredContent"] == body["data"]
    assert orders(server) == before + 1


async def test_same_key_with_other_arguments_is_refused_on_every_path(server):
    key = server.keys["writer"]
    await server.post("/action", {"action": "create_order", "params": ARGS}, key=key,
                      headers={"Idempotency-Key": "k-409"})
    before = snapshot(server)
    status, body, _ = await server.post("/action", {"action": "create_order", "params": OTHER_ARGS}, key=key,
                                        headers={"Idempotency-Key": "k-409"})
    assert (status, body["code"]) == (409, "idempotency_conflict")
    status, body, _ = await server.post("/", {"method": "action", "params": {"action": "create_order",
                                                                             "params": OTHER_ARGS}},
                                        key=key, headers={"Idempotency-Key": "k-409"})
    assert (status, body["code"]) == (409, "idempotency_conflict")
    session = await open_session(server, key)
    for meta, headers in (({"voka/idempotencyKey": "k-409"}, {}), (None, {"Idempotency-Key": "k-409"})):
        status, payload, _ = await server.post(
            "/mcp", {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": tool_call(OTHER_ARGS, meta)},
            key=key, headers={**ACCEPT, "Mcp-Session-Id": session, **headers})
        assert status == 200
        result = payload["result"]
        assert result["isError"] is True and "Idempotency-Key" in result["content"][0]["text"]
    assert snapshot(server) == before
    await server.bridge.audit.flush()
    rows = await server.bridge.on_state(server.bridge.audit.recent, 10)
    assert sum(row["error_code"] == "idempotency_conflict" for row in rows) == 4


async def test_mcp_header_and_meta_must_agree_and_keys_are_validated(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    before = snapshot(server)
    _, payload, _ = await server.post(
        "/mcp", {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                 "params": tool_call(ARGS, {"voka/idempotencyKey": "one"})},
        key=key, headers={**ACCEPT, "Mcp-Session-Id": session, "Idempotency-Key": "two"})
    assert payload["result"]["isError"] is True and "differ" in payload["result"]["content"][0]["text"]
    _, payload = await call(server, key, session, "tools/call",
                            tool_call(ARGS, {"voka/idempotencyKey": "has spaces"}))
    assert payload["result"]["isError"] is True
    _, payload = await call(server, key, session, "tools/call", tool_call(ARGS, {"voka/idempotencyKey": 7}))
    assert payload["result"]["isError"] is True
    assert snapshot(server) == before


async def test_mcp_keys_are_per_api_key(server):
    before = orders(server)
    for name in ("writer", "analyst"):
        session = await open_session(server, server.keys[name])
        status, payload = await call(server, server.keys[name], session, "tools/call",
                                     tool_call(ARGS, {"voka/idempotencyKey": "shared-key"}))
        assert status == 200 and "_meta" not in payload["result"]
    assert orders(server) == before + 2
