"""Raw JSON-RPC over HTTP against the real /mcp endpoint: one test per transport and protocol rule."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from multidict import CIMultiDict

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"}}
ACCEPT = {"Accept": "application/json, text/event-stream"}
SLOW_SQL = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
            "SELECT COUNT(*) AS n FROM c")


def init_body(version: str = "2025-11-25", request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "raw-test", "version": "1"}}}


async def open_session(server: Any, key: str, version: str = "2025-11-25") -> str:
    status, body, response = await server.post("/mcp", init_body(version), key=key, headers=ACCEPT)
    assert status == 200, body
    session = response.headers["Mcp-Session-Id"]
    status, _, _ = await server.post("/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                     key=key, headers={**ACCEPT, "Mcp-Session-Id": session})
    assert status == 202
    return session


async def call(server: Any, key: str, session: str, method: str, params: dict[str, Any] | None = None,
               request_id: int | str = 7, version: str | None = None) -> tuple[int, Any]:
    headers = {**ACCEPT, "Mcp-Session-Id": session}
    if version:
        headers["MCP-Protocol-Version"] = version
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    status, payload, _ = await server.post("/mcp", body, key=key, headers=headers)
    return status, payload


def modern_body(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": META}}


def modern_headers(method: str, name: str | None = None, version: str = MODERN) -> dict[str, str]:
    headers = {**ACCEPT, "MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


# ---- authentication, Origin and Host ------------------------------------------------------------------
async def test_missing_key_is_401_with_www_authenticate(server):
    status, _, response = await server.post("/mcp", init_body(), headers=ACCEPT)
    assert status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Mcp-Session-Id" not in response.headers


async def test_wrong_key_is_401(server):
    status, _, _ = await server.post("/mcp", init_body(), key="vbk_nope_" + "x" * 40, headers=ACCEPT)
    assert status == 401


async def test_foreign_origin_is_403_and_opens_no_session(server):
    status, body, response = await server.post(
        "/mcp", init_body(), key=server.keys["writer"], headers={**ACCEPT, "Origin": "http://evil.example.com"})
    assert status == 403
    assert body["error"]["code"] == -32600 and "Origin" in body["error"]["message"]
    assert "Mcp-Session-Id" not in response.headers
    assert len(server.host.runner.app[_mcp_key()].sessions) == 0


async def test_loopback_and_configured_origins_are_allowed(make_server):
    running = await make_server({"server": {"allowed_origins": ["https://app.voka.ai"]}})
    key = await running.create_key("w", ("query", "action"))
    for origin in ("http://localhost:6274", "http://127.0.0.1:3000", "https://app.voka.ai"):
        status, body, _ = await running.post("/mcp", init_body(), key=key, headers={**ACCEPT, "Origin": origin})
        assert status == 200, (origin, body)
    status, _, _ = await running.post("/mcp", init_body(), key=key,
                                      headers={**ACCEPT, "Origin": "https://app.voka.ai.evil.com"})
    assert status == 403


async def test_foreign_host_is_403(server):
    status, _, response = await server.post("/mcp", init_body(), key=server.keys["writer"],
                                            headers={**ACCEPT, "Host": "evil.example.com"})
    assert status == 403
    assert "Mcp-Session-Id" not in response.headers


# ---- the handshake and sessions -------------------------------------------------------------------------
@pytest.mark.parametrize(("asked", "answered"), [("2024-11-05", "2024-11-05"), ("2025-03-26", "2025-03-26"),
                                                 ("2025-06-18", "2025-06-18"), ("2025-11-25", "2025-11-25"),
                                                 ("1999-01-01", "2025-11-25")])
async def test_initialize_negotiates_the_version(server, asked, answered):
    status, body, response = await server.post("/mcp", init_body(asked), key=server.keys["writer"],
                                               headers=ACCEPT)
    assert status == 200
    assert response.content_type == "application/json"
    assert body["result"]["protocolVersion"] == answered
    assert body["result"]["capabilities"]["tools"] == {"listChanged": True}
    assert body["result"]["serverInfo"]["name"] == "voka-bridge"


async def test_session_ids_are_unguessable_and_unique(server):
    ids = {await open_session(server, server.keys["writer"]) for _ in range(20)}
    assert len(ids) == 20
    for session_id in ids:
        assert len(session_id) >= 40
        assert all(0x21 <= ord(ch) <= 0x7E for ch in session_id)


async def test_initialize_with_bad_params_is_invalid_params(server):
    body = init_body()
    del body["params"]["clientInfo"]
    _, payload, response = await server.post("/mcp", body, key=server.keys["writer"], headers=ACCEPT)
    assert payload["error"]["code"] == -32602
    assert "Mcp-Session-Id" not in response.headers


async def test_request_without_session_is_400(server):
    status, body, _ = await server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                        key=server.keys["writer"], headers=ACCEPT)
    assert status == 400
    assert body["error"]["code"] == -32600 and "session" in body["error"]["message"].lower()


async def test_unknown_session_is_404(server):
    status, body = await call(server, server.keys["writer"], "not-a-session", "tools/list")
    assert status == 404
    assert body["error"]["code"] == -32600


async def test_session_of_another_key_is_404(server):
    session = await open_session(server, server.keys["writer"])
    status, _ = await call(server, server.keys["reader"], session, "tools/list")
    assert status == 404
    status, body = await call(server, server.keys["writer"], session, "tools/list")
    assert status == 200 and "tools" in body["result"]


async def test_delete_ends_the_session(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    async with server.session.delete(server.url + "/mcp", headers={"x-api-key": key, "Mcp-Session-Id": session}
                                     ) as response:
        assert response.status == 204
    status, _ = await call(server, key, session, "ping")
    assert status == 404
    async with server.session.delete(server.url + "/mcp", headers={"x-api-key": key}) as response:
        assert response.status == 400


async def test_idle_session_expires(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    store = server.host.runner.app[_mcp_key()].sessions
    store.idle_timeout = 0.2
    status, _ = await call(server, key, session, "ping")
    assert status == 200
    await asyncio.sleep(0.4)
    status, body = await call(server, key, session, "ping")
    assert status == 404 and body["error"]["code"] == -32600


async def test_per_key_session_cap_evicts_the_oldest_idle_session(server):
    key = server.keys["writer"]
    store = server.host.runner.app[_mcp_key()].sessions
    store.per_key = 3
    first = await open_session(server, key)
    others = [await open_session(server, key) for _ in range(3)]
    assert len(others) == 3 and len(store.for_key(_key_id(server, "writer"))) == 3
    status, _ = await call(server, key, first, "ping")
    assert status == 404
    reader = await open_session(server, server.keys["reader"])  # another key's sessions are not touched
    status, _ = await call(server, server.keys["reader"], reader, "ping")
    assert status == 200


async def test_ping_answers_an_empty_result(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    status, body = await call(server, key, session, "ping", request_id="abc")
    assert (status, body) == (200, {"jsonrpc": "2.0", "id": "abc", "result": {}})


async def test_notifications_are_accepted_with_202(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    status, _, _ = await server.post("/mcp", {"jsonrpc": "2.0", "method": "notifications/progress",
                                                 "params": {"progressToken": 1, "progress": 1}},
                                        key=key, headers={**ACCEPT, "Mcp-Session-Id": session})
    assert status == 202


async def test_unknown_method_is_method_not_found(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    status, body = await call(server, key, session, "prompts/list")
    assert status == 200
    assert body["error"]["code"] == -32601


async def test_protocol_version_header_missing_or_known_is_served(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    status, body = await call(server, key, session, "tools/list")
    assert status == 200 and body["result"]["tools"]
    status, body = await call(server, key, session, "tools/list", version="2025-11-25")
    assert status == 200 and body["result"]["tools"]


async def test_unsupported_protocol_version_header_is_400(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    status, body = await call(server, key, session, "tools/list", version="2099-01-01")
    assert status == 400
    assert body["error"]["code"] in (-32602, -32022)


async def test_bad_json_is_parse_error(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    status, body, _ = await server.post("/mcp", raw=b'{"jsonrpc": "2.0", "id": 1,', key=key,
                                        headers={**ACCEPT, "Mcp-Session-Id": session})
    assert status == 400
    assert body == {"jsonrpc": "2.0", "id": None, "error": body["error"]}
    assert body["error"]["code"] == -32700


async def test_malformed_envelope_is_invalid_request(server):
    key = server.keys["writer"]
    session = await open_session(server, key)
    status, body, _ = await server.post("/mcp", {"id": 3, "method": "ping"}, key=key,
                                        headers={**ACCEPT, "Mcp-Session-Id": session})
    assert status == 400
    assert body["error"]["code"] == -32600 and body["id"] == 3


async def test_not_json_content_type_is_415(server):
    status, body, _ = await server.post("/mcp", raw=b"ping", key=server.keys["writer"],
                                        headers={**ACCEPT, "Content-Type": "text/plain"})
    assert status == 415
    assert body["error"]["code"] == -32600


async def test_client_that_cannot_accept_json_gets_406(server):
    status, _, _ = await server.post("/mcp", init_body(), key=server.keys["writer"],
                                     headers={"Accept": "text/event-stream"})
    assert status == 406


async def test_put_is_405(server):
    async with server.session.put(server.url + "/mcp", headers={"x-api-key": server.keys["writer"]}
                                  ) as response:
        assert response.status == 405
        assert "POST" in response.headers["Allow"]


# ---- batches ------------------------------------------------------------------------------------------
async def test_batch_is_answered_at_2025_03_26(server):
    key = server.keys["writer"]
    session = await open_session(server, key, "2025-03-26")
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"},
             {"jsonrpc": "2.0", "method": "notifications/initialized"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "check_inventory", "arguments": {"product_id": "JKT-BLU-M"}}},
             {"jsonrpc": "2.0", "id": 3, "method": "nope"}]
    status, body, _ = await server.post("/mcp", batch, key=key, headers={**ACCEPT, "Mcp-Session-Id": session})
    assert status == 200
    by_id = {item["id"]: item for item in body}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["result"] == {}
    assert by_id[2]["result"]["structuredContent"]["rows"][0]["quantity"] == 3
    assert by_id[3]["error"]["code"] == -32601


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
async def test_batch_is_refused_where_the_version_forbids_it(server, version):
    key = server.keys["writer"]
    session = await open_session(server, key, version)
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
    status, body, _ = await server.post("/mcp", batch, key=key, headers={**ACCEPT, "Mcp-Session-Id": session})
    assert status == 400
    assert body["error"]["code"] == -32600 and "batch" in body["error"]["message"]


async def test_initialize_inside_a_batch_is_refused(server):
    status, body, _ = await server.post("/mcp", [init_body()], key=server.keys["writer"], headers=ACCEPT)
    assert status == 400
    assert body["error"]["code"] == -32600


# ---- cancellation -------------------------------------------------------------------------------------
async def test_cancelled_request_is_answered_request_cancelled(server):
    key = server.keys["analyst"]
    session = await open_session(server, key)
    slow = asyncio.create_task(call(server, key, session, "tools/call",
                                    {"name": "run_sql", "arguments": {"query": SLOW_SQL}}, request_id=41))
    service = server.host.runner.app[_mcp_key()]
    for _ in range(100):
        if any(41 in s.pending for s in service.sessions.all()):
            break
        await asyncio.sleep(0.01)
    status, _, _ = await server.post("/mcp", {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                              "params": {"requestId": 41, "reason": "caller hung up"}},
                                     key=key, headers={**ACCEPT, "Mcp-Session-Id": session})
    assert status == 202
    status, body = await asyncio.wait_for(slow, 10)
    assert status == 200
    assert body["id"] == 41 and body["error"]["code"] == -32800


# ---- the per-request era (2026-07-28) -----------------------------------------------------------------
async def test_discover_describes_the_server(server):
    status, body, response = await server.post("/mcp", modern_body("server/discover"), key=server.keys["reader"],
                                               headers=modern_headers("server/discover"))
    assert status == 200
    result = body["result"]
    assert result["supportedVersions"] == [MODERN]
    assert result["capabilities"]["tools"]["listChanged"] is True
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "voka-bridge"
    assert "Mcp-Session-Id" not in response.headers


async def test_modern_call_needs_no_session(server):
    status, body, _ = await server.post(
        "/mcp", modern_body("tools/call", {"name": "check_inventory", "arguments": {"product_id": "JKT-BLU-M"}}),
        key=server.keys["reader"], headers=modern_headers("tools/call", "check_inventory"))
    assert status == 200
    assert body["result"]["structuredContent"]["rows"][0]["product_id"] == "JKT-BLU-M"
    assert body["result"]["resultType"] == "complete"


async def test_modern_missing_meta_is_invalid_params(server):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    status, payload, _ = await server.post("/mcp", body, key=server.keys["reader"],
                                           headers=modern_headers("tools/list"))
    assert status == 400
    assert payload["error"]["code"] == -32602 and "_meta" in payload["error"]["message"]


@pytest.mark.parametrize(("headers", "fragment"), [
    ({"Mcp-Method": "tools/list"}, "mcp-method"),
    ({"Mcp-Name": "find_customer_by_phone"}, "mcp-name"),
    ({"MCP-Protocol-Version": "2025-11-25"}, None),
])
async def test_modern_routing_headers_must_match_the_body(server, headers, fragment):
    sent = {**modern_headers("tools/call", "check_inventory"), **headers}
    body = modern_body("tools/call", {"name": "check_inventory", "arguments": {"product_id": "X"}})
    status, payload, _ = await server.post("/mcp", body, key=server.keys["reader"], headers=sent)
    if fragment is None:  # a handshake version in the header routes to the session era: no session there
        assert status == 400 and "session" in payload["error"]["message"].lower()
        return
    assert status == 400
    assert payload["error"]["code"] == -32020 and fragment in payload["error"]["message"]


async def test_modern_missing_method_header_is_header_mismatch(server):
    sent = {**ACCEPT, "MCP-Protocol-Version": MODERN}
    status, payload, _ = await server.post("/mcp", modern_body("tools/list"), key=server.keys["reader"],
                                           headers=sent)
    assert status == 400 and payload["error"]["code"] == -32020


async def test_modern_unsupported_version_names_what_is_supported(server):
    body = modern_body("tools/list")
    body["params"]["_meta"] = {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    status, payload, _ = await server.post("/mcp", body, key=server.keys["reader"],
                                           headers=modern_headers("tools/list", version="2099-01-01"))
    assert status == 400
    assert payload["error"]["code"] == -32022
    assert payload["error"]["data"] == {"supported": [MODERN], "requested": "2099-01-01"}


async def test_modern_unknown_method_is_404(server):
    status, payload, _ = await server.post("/mcp", modern_body("ping"), key=server.keys["reader"],
                                           headers=modern_headers("ping"))
    assert status == 404 and payload["error"]["code"] == -32601


async def test_modern_unknown_tool_is_invalid_params(server):
    body = modern_body("tools/call", {"name": "nope", "arguments": {}})
    status, payload, _ = await server.post("/mcp", body, key=server.keys["reader"],
                                           headers=modern_headers("tools/call", "nope"))
    assert status == 400 and payload["error"]["code"] == -32602


async def test_modern_batch_is_refused(server):
    batch = [modern_body("tools/list", request_id=1), modern_body("tools/list", request_id=2)]
    status, payload, _ = await server.post("/mcp", batch, key=server.keys["reader"],
                                           headers=modern_headers("tools/list"))
    assert status == 400
    assert payload["error"]["code"] == -32600 and payload["id"] is None


async def test_modern_notification_is_202(server):
    body = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    status, _, _ = await server.post("/mcp", body, key=server.keys["reader"],
                                     headers=modern_headers("notifications/cancelled"))
    assert status == 202


async def test_modern_duplicated_routing_header_is_refused(server):
    headers = [("x-api-key", server.keys["reader"]), ("Content-Type", "application/json"),
               ("Accept", "application/json"), ("MCP-Protocol-Version", MODERN),
               ("Mcp-Method", "tools/list"), ("Mcp-Method", "tools/list")]
    async with server.session.post(server.url + "/mcp", data=json.dumps(modern_body("tools/list")),
                                   headers=CIMultiDict(headers)) as response:
        payload = await response.json()
        assert response.status == 400
    assert payload["error"]["code"] == -32020


async def test_modern_get_is_405(server):
    async with server.session.get(server.url + "/mcp", headers={
            "x-api-key": server.keys["reader"], "MCP-Protocol-Version": MODERN,
            "Accept": "text/event-stream"}) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"


async def test_modern_tool_list_is_paginated_when_long(make_server, home):
    extra = "".join(f'\n[tools.lookup_{i:03d}]\nkind = "query"\ndescription = "Lookup {i}."\n'
                    f'sql = "SELECT {i} AS n"\n' for i in range(130))
    home.tools_file.write_text(home.tools_file.read_text(encoding="utf-8") + extra, encoding="utf-8")
    running = await make_server()
    key = await running.create_key("r", ("query",))
    names: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"cursor": cursor} if cursor else {}
        status, payload, _ = await running.post("/mcp", modern_body("tools/list", params), key=key,
                                                headers=modern_headers("tools/list"))
        assert status == 200
        names += [tool["name"] for tool in payload["result"]["tools"]]
        cursor = payload["result"].get("nextCursor")
        if cursor is None:
            break
    assert len(names) == len(set(names)) == 133
    status, payload, _ = await running.post("/mcp", modern_body("tools/list", {"cursor": "garbage"}), key=key,
                                            headers=modern_headers("tools/list"))
    assert status == 400 and payload["error"]["code"] == -32602


async def test_refusals_are_audited_as_mcp(server):
    await server.post("/mcp", modern_body("ping"), key=server.keys["reader"], headers=modern_headers("ping"))
    await server.bridge.audit.flush()
    rows = await server.bridge.on_state(server.bridge.audit.recent, 20)
    row = next(r for r in rows if r["route"] == "/mcp")
    assert row["protocol"] == "mcp" and row["status"] == 404 and row["error_code"] == "method_not_found"


def _mcp_key() -> Any:
    from server.http.mcp import MCP

    return MCP


def _key_id(server: Any, name: str) -> str:
    return server.keys[name].split("_")[1]
