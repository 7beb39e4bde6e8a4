"""The Voka request format over real HTTP: every status of DESIGN section 6 and every kind of bad input."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3

import pytest

from tests.conftest import RunningServer

PHONE = "+15558594448"  # customer 1 in the demo data
STOCK_TOOL = '''
[tools.stock_count]
kind = "query"
description = "Units in stock of one product (cached for a minute)."
sql = "SELECT quantity FROM inventory WHERE product_id = :product_id"
cache_ttl_seconds = 60

[tools.stock_count.params.product_id]
type = "string"
'''


def snapshot(server: RunningServer) -> str:
    """A digest of every row of the demo tables, to prove by content that nothing changed."""
    conn = sqlite3.connect(server.bridge.paths.demo_db)
    try:
        digest = hashlib.sha256()
        for table in ("customers", "inventory", "orders"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):
                digest.update(repr(row).encode())
        return digest.hexdigest()
    finally:
        conn.close()


def stock(server: RunningServer, product_id: str) -> int:
    conn = sqlite3.connect(server.bridge.paths.demo_db)
    try:
        return conn.execute("SELECT quantity FROM inventory WHERE product_id = ?", (product_id,)).fetchone()[0]
    finally:
        conn.close()


async def test_seed_curl_example_on_every_entry_point(server: RunningServer) -> None:
    key = server.keys["analyst"]
    direct = await server.post("/query", {"query": "SELECT * FROM customers LIMIT 5"}, key=key)
    envelope = await server.post("/", {"method": "query", "params": {"query": "SELECT * FROM customers LIMIT 5"}},
                                 key=key)
    for status, body, _ in (direct, envelope):
        assert status == 200
        assert body["success"] is True and len(body["data"]) == 5 and body["truncated"] is False


async def test_raw_sql_binds_dollar_arguments(server: RunningServer) -> None:
    status, body, _ = await server.post(
        "/query", {"query": "SELECT name, account_status, last_purchase FROM customers WHERE phone = $1",
                   "args": [PHONE]}, key=server.keys["analyst"])
    assert status == 200
    assert body["data"] == [{"name": "Ava Martin", "account_status": "active", "last_purchase": "2025-06-05"}]


async def test_catalog_query_by_name_with_bearer_auth(server: RunningServer) -> None:
    status, body, _ = await server.post(
        "/query", {"name": "find_customer_by_phone", "params": {"phone": PHONE}},
        headers={"Authorization": f"Bearer {server.keys['reader']}"})
    assert status == 200
    assert body["data"][0]["name"] == "Ava Martin"


async def test_unknown_phone_is_an_empty_list(server: RunningServer) -> None:
    status, body, _ = await server.post("/query", {"name": "find_customer_by_phone",
                                                   "params": {"phone": "+10000000000"}},
                                        key=server.keys["reader"])
    assert (status, body["data"], body["count"]) == (200, [], 0)


async def test_check_inventory_and_order_status(server: RunningServer) -> None:
    key = server.keys["reader"]
    status, body, _ = await server.post("/", {"method": "query", "params": {
        "name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}}, key=key)
    assert status == 200 and body["data"][0]["quantity"] == stock(server, "JKT-BLU-M")
    status, body, _ = await server.post("/query", {"name": "get_order_status", "params": {"order_id": 1}},
                                        key=key)
    assert status == 200
    order = body["data"][0]
    assert order["status"] in {"pending", "paid", "shipped", "delivered", "cancelled"}
    assert isinstance(order["items"], list) and order["items"][0]["quantity"] >= 1


async def test_create_customer_returns_the_row_and_refuses_duplicates(server: RunningServer) -> None:
    key = server.keys["writer"]
    params = {"name": "Robert'); DROP TABLE customers;--", "email": "bob@example.com", "phone": "+15550001111"}
    status, body, _ = await server.post("/action", {"action": "create_customer", "params": params}, key=key)
    assert status == 200
    assert body["data"]["name"] == params["name"]  # stored verbatim, never executed
    assert body["data"]["account_status"] == "active"
    before = snapshot(server)
    status, body, _ = await server.post("/", {"method": "action", "params": {
        "action": "create_customer", "params": {**params, "name": "Someone else"}}}, key=key)
    assert status == 409 and body["code"] == "constraint_violation"
    assert "phone" in body["error"]
    assert snapshot(server) == before


async def test_create_order_reserves_stock_in_one_transaction(server: RunningServer) -> None:
    key = server.keys["writer"]
    before = stock(server, "JKT-BLU-M")
    status, body, _ = await server.post("/action", {"action": "create_order", "params": {
        "customer_id": 1, "items": [{"product_id": "JKT-BLU-M", "quantity": 1}]}}, key=key)
    assert status == 200
    assert body["data"]["status"] == "pending"
    assert body["data"]["items"] == [{"product_id": "JKT-BLU-M", "quantity": 1}]
    assert stock(server, "JKT-BLU-M") == before - 1


async def test_short_stock_refuses_and_writes_nothing(server: RunningServer) -> None:
    before = snapshot(server)
    available = stock(server, "JKT-BLU-M")
    status, body, _ = await server.post("/action", {"action": "create_order", "params": {
        "customer_id": 1, "items": [{"product_id": "SCF-RED", "quantity": 1},
                                    {"product_id": "JKT-BLU-M", "quantity": available + 1}]}},
        key=server.keys["writer"])
    assert status == 409
    assert body == {"success": False, "code": "insufficient_stock",
                    "error": f"Not enough stock of JKT-BLU-M: {available} available, {available + 1} wanted."}
    assert snapshot(server) == before


async def test_order_for_missing_customer_is_refused(server: RunningServer) -> None:
    before = snapshot(server)
    status, body, _ = await server.post("/action", {"action": "create_order", "params": {
        "customer_id": 99999, "items": [{"product_id": "SCF-RED", "quantity": 1}]}}, key=server.keys["writer"])
    assert (status, body["code"]) == (404, "customer_not_found")
    assert snapshot(server) == before


async def test_parallel_orders_never_oversell(server: RunningServer) -> None:
    product = "JKT-BLU-M"
    conn = sqlite3.connect(server.bridge.paths.demo_db)
    with conn:
        conn.execute("UPDATE inventory SET quantity = 7 WHERE product_id = ?", (product,))
    conn.close()
    body = {"action": "create_order", "params": {"customer_id": 2,
                                                 "items": [{"product_id": product, "quantity": 1}]}}
    results = await asyncio.gather(*(server.post("/action", body, key=server.keys["writer"])
                                     for _ in range(100)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 7
    assert statuses.count(409) == 93
    assert stock(server, product) == 0


# ---- refusals: status, shape, and the database unchanged ------------------------------------------

BAD_BODIES = [
    pytest.param(b"{not json", 400, "invalid_json", id="malformed-json"),
    pytest.param(b"[1, 2]", 400, "invalid_json", id="json-array"),
    pytest.param(b'"a string"', 400, "invalid_json", id="json-string"),
    pytest.param(b"", 400, "invalid_json", id="empty-body"),
    pytest.param(b'{"method": "delete", "params": {}}', 400, "invalid_method", id="unknown-method"),
    pytest.param(b'{"method": "query", "params": []}', 400, "bad_request", id="params-not-object"),
    pytest.param(b'{"method": "query", "params": {}}', 400, "missing_tool", id="no-tool"),
    pytest.param(b'{"method": "query", "params": {"name": "drop_everything"}}', 404, "unknown_tool",
                 id="unknown-tool"),
    pytest.param(b'{"method": "query", "params": {"name": "create_customer", "params": {}}}', 404,
                 "unknown_tool", id="action-sent-as-query"),
    pytest.param(b'{"method": "query", "params": {"name": "find_customer_by_phone", "params": {}}}', 400,
                 "invalid_params", id="missing-param"),
    pytest.param(b'{"method": "query", "params": {"name": "find_customer_by_phone", '
                 b'"params": {"phone": "+15558594448", "extra": 1}}}', 400, "invalid_params", id="extra-param"),
    pytest.param(b'{"method": "query", "params": {"name": "get_order_status", "params": {"order_id": "1"}}}',
                 400, "invalid_params", id="string-for-integer"),
    pytest.param(b'{"method": "query", "params": {"name": "get_order_status", "params": {"order_id": 0}}}',
                 400, "invalid_params", id="below-minimum"),
    pytest.param(b'{"method": "query", "params": {"name": "find_customer_by_phone", '
                 b'"params": {"phone": "1 OR 1=1"}}}', 400, "invalid_params", id="injection-in-pattern-param"),
    pytest.param(b'{"method": "action", "params": {"action": "create_order", "params": {"customer_id": 1, '
                 b'"items": [{"product_id": "SCF-RED", "quantity": 0}]}}}', 400, "invalid_params",
                 id="nested-json-param"),
    pytest.param(b'{"method": "action", "params": {"action": "create_customer", "params": {"name": "A", '
                 b'"phone": "+15550001234", "email": "not-an-email"}}}', 400, "invalid_params", id="bad-email"),
    pytest.param(b'{"method": "query", "params": {"query": "DELETE FROM customers"}}', 400, "read_only",
                 id="raw-delete"),
    pytest.param(b'{"method": "query", "params": {"query": "UPDATE inventory SET quantity = 0"}}', 400,
                 "read_only", id="raw-update"),
    pytest.param(b'{"method": "query", "params": {"query": "SELECT 1; DROP TABLE customers"}}', 400,
                 "multiple_statements", id="raw-multi-statement"),
    pytest.param(b'{"method": "query", "params": {"query": "SELEKT * FROM customers"}}', 400, "sql_error",
                 id="raw-syntax-error"),
    pytest.param(b'{"method": "query", "params": {"query": "SELECT $1", "args": "x"}}', 400,
                 "invalid_params", id="raw-args-not-list"),
]


@pytest.mark.parametrize(("raw", "status", "code"), BAD_BODIES)
async def test_bad_input_is_refused_and_changes_nothing(server: RunningServer, raw: bytes, status: int,
                                                       code: str) -> None:
    before = snapshot(server)
    got, body, _ = await server.post("/", raw=raw, key=server.keys["analyst"])
    assert (got, body["success"], body["code"]) == (status, False, code), body
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    assert snapshot(server) == before


async def test_wrong_content_type_is_415(server: RunningServer) -> None:
    status, body, _ = await server.post("/query", raw=b'{"query": "SELECT 1"}', key=server.keys["analyst"],
                                        headers={"Content-Type": "text/plain"})
    assert (status, body["code"]) == (415, "unsupported_media_type")


async def test_oversized_body_is_413(make_server) -> None:
    running = await make_server({"limits": {"max_body_bytes": 1024}})
    key = await running.create_key("big", ("query", "action"))
    before = snapshot(running)
    huge = {"action": "create_customer", "params": {"name": "x" * 5000, "phone": "+15550009999"}}
    status, body, _ = await running.post("/action", huge, key=key)
    assert (status, body["code"]) == (413, "payload_too_large")
    assert snapshot(running) == before


async def test_missing_and_unknown_keys_are_401(server: RunningServer) -> None:
    for headers in ({}, {"x-api-key": "vbk_nope_nope"}, {"Authorization": "Basic abc"}):
        status, body, response = await server.post("/query", {"query": "SELECT 1"}, headers=headers)
        assert (status, body) == (401, {"success": False, "error": "Unauthorized", "code": "unauthorized"})
        assert "Bearer" in response.headers["WWW-Authenticate"]


async def test_missing_scope_is_403(server: RunningServer) -> None:
    status, body, _ = await server.post("/query", {"query": "SELECT 1"}, key=server.keys["writer"])
    assert (status, body["code"]) == (403, "forbidden") and "sql" in body["error"]
    status, body, _ = await server.post("/action", {"action": "create_customer", "params": {
        "name": "A", "phone": "+15550002222"}}, key=server.keys["reader"])
    assert (status, body["code"]) == (403, "forbidden")


async def test_rate_limit_is_429_with_retry_after(make_server) -> None:
    running = await make_server({"rate_limit": {"requests": 3, "window_seconds": 60}})
    key = await running.create_key("limited", ("query",))
    body = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}
    statuses = [(await running.post("/query", body, key=key))[0] for _ in range(3)]
    status, payload, response = await running.post("/query", body, key=key)
    assert statuses == [200, 200, 200]
    assert (status, payload["code"]) == (429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Policy"] == "3;w=60"


async def test_broken_catalog_tool_is_a_plain_500(make_server, home) -> None:
    home.tools_file.write_text(home.tools_file.read_text() + '''
[tools.broken]
kind = "query"
description = "Refers to a table that does not exist."
sql = "SELECT * FROM no_such_table"
''')
    running = await make_server()
    key = await running.create_key("k", ("query",))
    status, body, _ = await running.post("/query", {"name": "broken"}, key=key)
    assert status == 500 and body["success"] is False and body["code"] == "tool_failed"
    assert "no_such_table" not in body["error"]


async def test_database_missing_is_503(make_server, home, tmp_path) -> None:
    running = await make_server(database_url=f"sqlite:///{(tmp_path / 'gone.sqlite3').as_posix().lstrip('/')}")
    key = await running.create_key("k", ("query",))
    status, body, _ = await running.post("/query", {"name": "check_inventory",
                                                    "params": {"product_id": "SCF-RED"}}, key=key)
    assert (status, body["code"]) == (503, "database_unavailable")
    # The caller reads one plain sentence; the cause (here a file path) is for the owner only.
    assert body["error"] == "The database is unavailable; try again shortly."
    assert "gone.sqlite3" not in str(body)
    await running.bridge.audit.flush()
    rows = await running.bridge.on_state(running.bridge.audit.recent, 5)
    assert "gone.sqlite3" in rows[-1]["detail"]
    status, health, _ = await running.get("/health")
    assert status == 503 and health["status"] == "unhealthy"


async def test_slow_raw_query_is_504(make_server) -> None:
    running = await make_server({"limits": {"query_timeout_seconds": 0.3}})
    key = await running.create_key("k", ("query", "sql"))
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    status, body, _ = await running.post("/query", {"query": endless}, key=key)
    assert (status, body["code"]) == (504, "query_timeout")
    status, body, _ = await running.post("/query", {"query": "SELECT 1 AS one"}, key=key)
    assert (status, body["data"]) == (200, [{"one": 1}])


async def test_row_cap_sets_truncated(make_server) -> None:
    running = await make_server({"limits": {"max_rows": 10}})
    key = await running.create_key("k", ("query", "sql"))
    status, body, _ = await running.post("/query", {"query": "SELECT id FROM customers"}, key=key)
    assert status == 200 and len(body["data"]) == 10 and body["truncated"] is True


async def test_unknown_route_and_wrong_method_are_json(server: RunningServer) -> None:
    status, body, _ = await server.get("/nowhere", key=server.keys["reader"])
    assert (status, body["code"]) == (404, "not_found")
    status, body, response = await server.get("/query", key=server.keys["reader"])
    assert (status, body["code"]) == (405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


async def test_health_round_trips_and_hides_details_without_a_key(server: RunningServer) -> None:
    status, body, _ = await server.get("/health")
    assert status == 200 and set(body) == {"status", "timestamp"} and body["status"] == "healthy"
    status, body, _ = await server.get("/health", key=server.keys["reader"])
    assert status == 200 and body["database"] == "sqlite" and body["tools"] == 5


async def test_every_request_leaves_one_audit_row(server: RunningServer) -> None:
    await server.post("/query", {"name": "check_inventory", "params": {"product_id": "SCF-RED"}},
                      key=server.keys["reader"])
    await server.post("/query", {"query": "SELECT 1"})
    await server.post("/query", {"query": "SELECT 1"}, key=server.keys["reader"])
    await server.bridge.audit.flush()
    rows = await server.bridge.on_state(server.bridge.audit.recent, 10)
    assert [(r["status"], r["key_name"], r["tool"], r["error_code"]) for r in reversed(rows)] == [
        (200, "reader", "check_inventory", None), (401, None, "sql", "unauthorized"),  # what it asked for
        (403, "reader", "sql", "forbidden")]
    assert rows[-1]["rows"] == 1 and rows[-1]["client"] == "127.0.0.1" and rows[-1]["duration_ms"] > 0


async def test_cached_query_answers_from_cache_until_a_write(make_server, home) -> None:
    home.tools_file.write_text(home.tools_file.read_text() + STOCK_TOOL)
    running = await make_server()
    key = await running.create_key("k", ("query", "action"))
    ask = {"name": "stock_count", "params": {"product_id": "SCF-RED"}}
    first = (await running.post("/query", ask, key=key))[1]["data"]
    conn = sqlite3.connect(running.bridge.paths.demo_db)
    with conn:
        conn.execute("UPDATE inventory SET quantity = quantity + 5 WHERE product_id = 'SCF-RED'")
    conn.close()
    assert (await running.post("/query", ask, key=key))[1]["data"] == first  # served from the cache
    await running.post("/action", {"action": "create_customer", "params": {
        "name": "Cache Buster", "phone": "+15550007777"}}, key=key)
    after = (await running.post("/query", ask, key=key))[1]["data"]
    assert after == [{"quantity": first[0]["quantity"] + 5}]  # any action empties the cache


async def test_a_caller_hanging_up_mid_body_is_audited_as_499_not_a_server_error(server: RunningServer,
                                                                                  caplog) -> None:
    """Load generators and impatient clients close connections mid-request: that is no server fault,
    so no 500, no "unhandled error" traceback in error.log, and the audit row says what happened."""
    port = int(server.url.rsplit(":", 1)[1])
    for path in ("/query", "/mcp"):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                     "Accept: application/json, text/event-stream\r\n"
                     f"x-api-key: {server.keys['reader']}\r\nContent-Length: 500\r\n\r\n{{\"name\": ".encode())
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is now waiting for the rest of the body
        writer.close()
        await writer.wait_closed()
    for _ in range(50):
        await server.bridge.audit.flush()
        rows = await server.bridge.on_state(server.bridge.audit.recent, 10)
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.05)
    assert sorted((r["route"], r["status"], r["error_code"], r["key_name"]) for r in rows) == [
        ("/mcp", 499, "client_closed", "reader"), ("/query", 499, "client_closed", "reader")]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    status, body, _ = await server.post("/query", {"name": "check_inventory",
                                                   "params": {"product_id": "SCF-RED"}}, key=server.keys["reader"])
    assert status == 200 and body["success"] is True
