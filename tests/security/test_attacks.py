"""Attacks on the live server: header smuggling, foreign and revoked keys, path tricks, hostile JSON,
invalid UTF-8, request smuggling at the HTTP layer, and what errors and the audit log reveal."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from server.keys import KeyStore
from server.state import connect_state
from tests.conftest import RunningServer
from tests.security.conftest import (
    SECRET_MARKERS,
    audit_rows,
    body_of,
    database_digest,
    host_of,
    raw_exchange,
    request_bytes,
    status_of,
)

INVENTORY = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}
UNAUTHORIZED = {"success": False, "error": "Unauthorized", "code": "unauthorized"}


async def raw_post(server: RunningServer, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    raw = await raw_exchange(server.url, request_bytes("POST", path, host=host_of(server.url), body=body,
                                                       headers={"Content-Type": "application/json", **headers}))
    return status_of(raw), body_of(raw)


# ---- who is calling ------------------------------------------------------------------------------
async def test_header_smuggling_and_ambiguity_are_refused(server: RunningServer) -> None:
    reader, writer = server.keys["reader"], server.keys["writer"]
    body = json.dumps(INVENTORY).encode()
    cases = [
        [("x-api-key", reader), ("x-api-key", reader)],  # the same key twice
        [("x-api-key", "vbk_wrong_guess"), ("x-api-key", reader)],  # first-wins / last-wins confusion
        [("x-api-key", reader), ("X-API-KEY", writer)],
        [("x-api-key", reader), ("Authorization", f"Bearer {writer}")],  # two different keys
        [("x-api-key", reader), ("x-api-key", reader), ("Authorization", f"Bearer {reader}")],
        [("Authorization", f"Bearer {reader}"), ("Authorization", f"Bearer {reader}")],
        [("x-api-key", f"{reader}, {writer}")],  # a folded list is one (wrong) value
        [("Authorization", f"Basic {base64.b64encode(f'user:{reader}'.encode()).decode()}")],
        [("Authorization", f"Token {reader}")],
        [("Authorization", "Bearer")],
        [("x-api-key", reader.upper())],
        [("x-api-key", reader[:-1])],
        [("x-api-key", reader + "x")],
        [("x-api-key", reader.replace("vbk_", "VBK_"))],
        [("x-api-key-2", reader)],
    ]
    for headers in cases:
        request = "\r\n".join(["POST /query HTTP/1.1", f"Host: {host_of(server.url)}",
                               "Content-Type: application/json", f"Content-Length: {len(body)}",
                               *(f"{name}: {value}" for name, value in headers)])
        raw = await raw_exchange(server.url, request.encode() + b"\r\n\r\n" + body)
        assert status_of(raw) == 401, headers
        assert json.loads(body_of(raw)) == UNAUTHORIZED


async def test_header_name_case_and_surrounding_space_follow_http(server: RunningServer) -> None:
    reader = server.keys["reader"]
    for headers in ({"X-Api-Key": reader}, {"X-API-KEY": f"  {reader}  "},
                    {"authorization": f"bearer {reader}"}, {"Authorization": f"Bearer   {reader}"}):
        status, _ = await raw_post(server, "/query", json.dumps(INVENTORY).encode(), headers)
        assert status == 200, headers


async def test_a_key_in_the_url_or_the_body_is_not_accepted(server: RunningServer) -> None:
    reader = server.keys["reader"]
    async with server.session.post(f"{server.url}/query?api_key={reader}&x-api-key={reader}",
                                   json=INVENTORY) as response:
        assert response.status == 401
    status, body, _ = await server.post("/query", {**INVENTORY, "x-api-key": reader, "apiKey": reader})
    assert (status, body) == (401, UNAUTHORIZED)


async def test_a_key_from_another_install_is_unknown_here(server: RunningServer, tmp_path: Path) -> None:
    conn = connect_state(tmp_path / "elsewhere" / "state.sqlite3")
    _, foreign = KeyStore(conn).create("reader", ("query", "action", "sql"))
    conn.close()
    status, body, _ = await server.post("/query", INVENTORY, key=foreign)
    assert (status, body) == (401, UNAUTHORIZED)
    row = next(r for r in await audit_rows(server.bridge) if r["status"] == 401)
    assert row["detail"].startswith("unknown key id") and row["key_id"] is None


async def test_revoked_key_replay_is_refused_and_recorded(server: RunningServer) -> None:
    key = server.keys["writer"]
    await server.bridge.on_state(server.bridge.keys.revoke, "writer")
    await server.bridge.reload_keys()
    for path, body in (("/query", INVENTORY), ("/", {"method": "query", "params": INVENTORY}),
                       ("/action", {"action": "create_customer", "params": {"name": "X", "phone": "+1555000111"}})):
        status, answer, _ = await server.post(path, body, key=key)
        assert (status, answer) == (401, UNAUTHORIZED)
    rows = [r for r in await audit_rows(server.bridge) if r["status"] == 401]
    assert len(rows) == 3 and all(r["detail"].startswith("revoked key") for r in rows)
    health = await server.get("/health", key=key)
    assert set(health[1]) == {"status", "timestamp"}  # a revoked key sees no details either


async def test_refused_requests_are_audited_with_their_reason(server: RunningServer) -> None:
    await server.post("/query", INVENTORY)
    await server.post("/query", INVENTORY, key="not-even-a-key")
    await server.post("/query", INVENTORY, headers={"x-api-key": "a", "Authorization": "Bearer b"})
    await server.post("/query", {"query": "SELECT 1"}, key=server.keys["reader"])  # lacks the sql scope
    rows = {(r["status"], r["error_code"], r["detail"]) for r in await audit_rows(server.bridge)}
    assert (401, "unauthorized", "no key") in rows
    assert (401, "unauthorized", "not a Voka Bridge key") in rows
    assert (401, "unauthorized", "two different keys in x-api-key and Authorization") in rows
    assert any(status == 403 and code == "forbidden" for status, code, _ in rows)


# ---- where it goes -------------------------------------------------------------------------------
TRICK_PATHS = ["/query/", "//query", "/query//", "/./query", "/health/../query", "/%2e%2e/query",
               "/health/%2e%2e/query", "/health%2f..%2fquery", "/QUERY", "/query%00", "/query;x=1",
               "/query%20", "/query#frag", "/openapi.json/../query", "/" + "a" * 4000, "/%ff%fe",
               "/query?name=check_inventory", "/mcp/../query", "/health/", "/\\query"]


@pytest.mark.parametrize("path", TRICK_PATHS)
async def test_path_tricks_never_bypass_authentication(server: RunningServer, path: str) -> None:
    before = database_digest(server.bridge.paths.demo_db)
    for method in ("POST", "GET", "PUT", "DELETE", "PATCH"):
        raw = await raw_exchange(server.url, request_bytes(
            method, path, host=host_of(server.url), body=json.dumps(INVENTORY).encode(),
            headers={"Content-Type": "application/json"}))
        status = status_of(raw)
        assert status in (400, 401, 404, 405, 414, 431), (method, path, raw[:200])
        payload = body_of(raw)
        assert b'"success": true' not in payload and b"SCF-RED" not in payload
        assert not any(marker.encode() in payload for marker in SECRET_MARKERS), payload[:300]
    assert database_digest(server.bridge.paths.demo_db) == before


async def test_other_methods_on_real_routes_are_405_not_served(server: RunningServer) -> None:
    for method, path in (("GET", "/query"), ("PUT", "/action"), ("TRACE", "/query"),
                         ("POST", "/health"), ("POST", "/openapi.json")):
        async with server.session.request(method, server.url + path,
                                          headers={"x-api-key": server.keys["analyst"]}) as response:
            assert response.status == 405, (method, path)
            assert (await response.json())["code"] == "method_not_allowed"


# ---- what it sends -------------------------------------------------------------------------------
HOSTILE_BODIES = [
    pytest.param(b"[" * 30_000 + b"]" * 30_000, 400, id="deeply-nested-arrays"),
    pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, id="deeply-nested-objects"),
    pytest.param(json.dumps({"name": "check_inventory", "params": {"product_id": "x" * 60_000}}).encode(),
                 400, id="very-long-string"),
    pytest.param(b'{"name": "check_inventory", "name": "find_customer_by_phone"}', 400, id="duplicate-keys"),
    pytest.param(b'{"query": "SELECT $1", "args": [NaN]}', 400, id="nan"),
    pytest.param(b'{"query": "SELECT $1", "args": [Infinity]}', 400, id="infinity"),
    pytest.param(b'{"query": "SELECT $1", "args": [1e999]}', 400, id="float-overflow"),
    pytest.param(b'{"query": "SELECT $1", "args": [99999999999999999999]}', 400, id="int-past-64-bits"),
    pytest.param(b'{"query": "SELECT $1", "args": [' + b"9" * 5000 + b"]}", 400, id="int-5000-digits"),
    pytest.param(b'{"name": "get_order_status", "params": {"order_id": 123456789012345678901234567890}}', 400,
                 id="huge-int-param"),
    pytest.param(b'{"query": "SELECT $1", "args": ["\\ud800"]}', 400, id="lone-surrogate-value"),
    pytest.param(b'{"\\udfff": 1}', 400, id="lone-surrogate-key"),
    pytest.param(b'{"query": "SELECT 1"}\xff\xfe', 400, id="invalid-utf8-tail"),
    pytest.param(b'{"query": "SELECT \xc3\x28"}', 400, id="invalid-utf8-sequence"),
    pytest.param(b'{"query": "SELECT \xed\xa0\x80"}', 400, id="utf8-encoded-surrogate"),
    pytest.param(b'\xef\xbb\xbf{"query": "SELECT 1"}', 400, id="byte-order-mark"),
    pytest.param('{"query": "SELECT 1"}'.encode("utf-16"), 400, id="utf-16"),
    pytest.param(b'{"query": "SELECT 1"} {"query": "SELECT 2"}', 400, id="two-documents"),
    pytest.param(b"\x00" * 100, 400, id="nul-bytes"),
    pytest.param(b'{"query": "SELECT 1"', 400, id="truncated"),
]


@pytest.mark.parametrize(("raw", "status"), HOSTILE_BODIES)
async def test_hostile_json_is_refused_cleanly(server: RunningServer, raw: bytes, status: int) -> None:
    before = database_digest(server.bridge.paths.demo_db)
    got, body, _ = await server.post("/query", raw=raw, key=server.keys["analyst"])
    assert got == status and body["success"] is False and body["code"] == "invalid_json", body
    assert not any(marker in body["error"] for marker in SECRET_MARKERS), body
    assert database_digest(server.bridge.paths.demo_db) == before


async def test_a_body_above_the_cap_is_413_whether_declared_or_chunked(server: RunningServer) -> None:
    huge = b'{"query": "' + b"x" * 200_000 + b'"}'
    status, body, _ = await server.post("/query", raw=huge, key=server.keys["analyst"])
    assert (status, body["code"]) == (413, "payload_too_large")

    async def chunks():  # no Content-Length: the cap must hold while reading
        for _ in range(40):
            yield b"x" * 4096

    async with server.session.post(server.url + "/query", data=chunks(), headers={
            "Content-Type": "application/json", "x-api-key": server.keys["analyst"]}) as response:
        assert response.status == 413
        assert (await response.json())["code"] == "payload_too_large"


async def test_a_body_arriving_in_slow_pieces_is_read_whole(server: RunningServer) -> None:
    body = json.dumps({"name": "check_inventory", "params": {"product_id": "SCF-RED"}}).encode()
    head = request_bytes("POST", "/query", host=host_of(server.url), content_length=len(body), headers={
        "Content-Type": "application/json", "x-api-key": server.keys["reader"]})
    raw = await raw_exchange(server.url, head, *[body[i:i + 7] for i in range(0, len(body), 7)], pause=0.05)
    assert status_of(raw) == 200 and json.loads(body_of(raw))["data"][0]["product_id"] == "SCF-RED"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                                          "application/jsonx", ""])
async def test_only_utf8_json_is_accepted(server: RunningServer, content_type: str) -> None:
    status, body = await raw_post(server, "/query", json.dumps(INVENTORY).encode(),
                                  {"Content-Type": content_type, "x-api-key": server.keys["reader"]})
    assert status == 415 and json.loads(body)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("request_head", [
    pytest.param(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", id="cl-and-te"),
    pytest.param(b"Content-Length: 5\r\nContent-Length: 50\r\n", id="two-lengths"),
    pytest.param(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", id="two-encodings"),
    pytest.param(b"Transfer-Encoding: xchunked\r\n", id="bogus-encoding"),
    pytest.param(b"Content-Length: -5\r\n", id="negative-length"),
    pytest.param(b"Content-Length: 5\r\n x-api-key: folded\r\n", id="obsolete-line-folding"),
    pytest.param(b"x-api-key: a\rb\r\n", id="bare-cr-in-header"),
])
async def test_request_smuggling_shapes_are_rejected_by_the_parser(server: RunningServer,
                                                                   request_head: bytes) -> None:
    key = server.keys["writer"].encode()
    action = json.dumps({"action": "create_customer", "params": {"name": "Smuggled", "phone": "+15550009876"}})
    smuggled = (f"POST /action HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-api-key: "
                f"{key.decode()}\r\nContent-Length: {len(action)}\r\n\r\n{action}").encode()
    before = database_digest(server.bridge.paths.demo_db)
    raw = await raw_exchange(server.url, b"POST /query HTTP/1.1\r\nHost: " + host_of(server.url).encode()
                             + b"\r\nContent-Type: application/json\r\nx-api-key: " + key + b"\r\n"
                             + request_head + b"\r\n0\r\n\r\n" + smuggled)
    assert status_of(raw) == 400
    assert b"Smuggled" not in raw
    assert database_digest(server.bridge.paths.demo_db) == before


# ---- what comes back -----------------------------------------------------------------------------
async def test_errors_never_echo_internals_or_secrets(server: RunningServer) -> None:
    analyst = server.keys["analyst"]
    probes = [
        ("/query", {"query": "SELECT load_extension('x')"}, analyst),
        ("/query", {"query": "ATTACH DATABASE '/etc/passwd' AS p"}, analyst),
        ("/query", {"query": "PRAGMA database_list"}, analyst),
        ("/query", {"query": "SELECT * FROM customers WHERE id = $1", "args": [{"$ne": 1}]}, analyst),
        ("/query", {"name": "../../etc/passwd"}, analyst),
        ("/query", {"name": "check_inventory", "params": {"product_id": ["SCF-RED"]}}, analyst),
        ("/action", {"action": "create_order", "params": {"customer_id": 1, "items": "DROP TABLE x"}}, analyst),
        ("/action", {"action": "create_customer", "params": {"name": "'; DROP TABLE customers; --",
                                                             "phone": "+15558594448"}}, analyst),
        ("/query", INVENTORY, analyst + "x"),
    ]
    for path, body, key in probes:
        status, answer, response = await server.post(path, body, key=key)
        assert 400 <= status < 500, (path, body, answer)
        text = json.dumps(answer)
        assert not any(marker in text for marker in SECRET_MARKERS), text
        assert str(server.bridge.paths.data_dir) not in text and analyst not in text
        assert not any(secret in text for secret in server.keys.values())
        assert response.headers["Content-Type"].startswith("application/json")


async def test_only_health_and_the_api_description_are_public(server: RunningServer) -> None:
    public = [("GET", "/health"), ("HEAD", "/health"), ("GET", "/openapi.json")]
    for method, path in public:
        async with server.session.request(method, server.url + path) as response:
            assert response.status == 200, (method, path)
    for method, path in [("POST", "/"), ("POST", "/query"), ("POST", "/action"), ("POST", "/mcp"),
                         ("GET", "/mcp"), ("DELETE", "/mcp")]:
        async with server.session.request(method, server.url + path, json={}) as response:
            assert response.status == 401, (method, path)
