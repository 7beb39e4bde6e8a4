"""The demo tools and the seed's raw SQL on a real PostgreSQL server, through the HTTP API."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import RunningServer
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401  (fixtures)

PHONE = "+15558594448"  # Ava Martin in data.sql


@pytest.fixture
async def api(pg_server: PgServer, pg_db: str, make_server) -> RunningServer:  # noqa: F811
    """Requested after pg_db so the server stops before its database is dropped."""
    running: RunningServer = await make_server({"rate_limit": {"requests": 10_000}},
                                               database_url=pg_server.url(pg_db))
    await running.create_key("reader", ("query",))
    await running.create_key("writer", ("query", "action"))
    await running.create_key("analyst", ("query", "action", "sql"))
    return running


async def test_health_is_a_real_round_trip_to_postgresql(api: RunningServer) -> None:
    status, body, _ = await api.get("/health", key=api.keys["reader"])
    assert status == 200
    assert body["status"] == "healthy"
    assert body["database"] == "postgresql"
    assert api.bridge._db is not None and api.bridge._db.engine == "postgresql"


async def test_find_customer_by_phone(api: RunningServer) -> None:
    status, body, _ = await api.post("/query", {"name": "find_customer_by_phone", "params": {"phone": PHONE}},
                                     key=api.keys["reader"])
    assert status == 200, body
    assert body["data"] == [{"id": 1, "name": "Ava Martin", "email": "ava.martin0@example.com",
                             "phone": PHONE, "account_status": "active", "last_purchase": "2025-06-05"}]


async def test_check_inventory_and_order_status_decode_jsonb(api: RunningServer) -> None:
    status, body, _ = await api.post("/query", {"name": "check_inventory", "params": {"product_id": "JKT-BLU-L"}},
                                     key=api.keys["reader"])
    assert status == 200
    assert body["data"] == [{"product_id": "JKT-BLU-L", "name": "Blue rain jacket (L)", "quantity": 20,
                             "location": "Warehouse B"}]
    status, body, _ = await api.post("/", {"method": "query", "params": {
        "name": "get_order_status", "params": {"order_id": 5}}}, key=api.keys["reader"])
    assert status == 200
    order = body["data"][0]
    assert order["items"] == [{"quantity": 2, "product_id": "BOT-HIK-42"},
                              {"quantity": 1, "product_id": "BAG-CNV-TOT"}]
    assert order["created_at"].startswith("2026-01-06T10:39:00")
    assert order["created_at"].endswith("+00:00")


async def test_seed_raw_lookup_with_dollar_args(api: RunningServer) -> None:
    sql = "SELECT name, account_status, last_purchase FROM customers WHERE phone = $1"
    status, body, _ = await api.post("/query", {"query": sql, "args": [PHONE]}, key=api.keys["analyst"])
    assert status == 200, body
    assert body["data"] == [{"name": "Ava Martin", "account_status": "active", "last_purchase": "2025-06-05"}]
    # The seed's curl example.
    status, body, _ = await api.post("/query", {"query": "SELECT * FROM customers LIMIT 5"},
                                     key=api.keys["analyst"])
    assert status == 200 and len(body["data"]) == 5


async def test_raw_args_are_fitted_to_parameter_types_like_a_text_driver(api: RunningServer) -> None:
    key = api.keys["analyst"]
    status, body, _ = await api.post("/query", {"query": "SELECT name FROM customers WHERE id = $1",
                                                "args": ["3"]}, key=key)
    assert status == 200 and body["data"] == [{"name": "Ines Reyes"}]
    status, body, _ = await api.post("/query", {"query": "SELECT $1::text AS t, $2::numeric AS n, "
                                                "$3::date AS d, $4::boolean AS b", "args": [42, "1.50", "2026-02-03",
                                                                                          "yes"]}, key=key)
    assert status == 200, body
    assert body["data"] == [{"t": "42", "n": 1.5, "d": "2026-02-03", "b": True}]
    status, body, _ = await api.post("/query", {"query": "SELECT name FROM customers WHERE id = $1",
                                                "args": ["three"]}, key=key)
    assert status == 400 and "$1" in body["error"] and "int8" in body["error"]
    status, body, _ = await api.post("/query", {"query": "SELECT name FROM customers WHERE id = $1 AND "
                                                "phone = $2", "args": [1]}, key=key)
    assert status == 400 and "2 placeholder" in body["error"]


async def test_results_are_json_safe_for_postgresql_types(api: RunningServer) -> None:
    sql = ("SELECT 12.345::numeric(10,3) AS price, 0.1::numeric + 0.2 AS exact, "
           "TIMESTAMPTZ '2026-03-04 05:06:07+00' AS at, '6f1a4b9e-3c55-4f0e-9d2b-1c2d3e4f5a6b'::uuid AS id, "
           "'{\"a\": [1, 2], \"b\": null}'::jsonb AS doc, '[1, \"x\"]'::json AS plain_json, "
           "ARRAY[1, 2, 3] AS ints, ARRAY['a', NULL] AS texts, '\\xdeadbeef'::bytea AS raw, "
           "'192.168.0.1/24'::inet AS addr, int4range(1, 5) AS span, INTERVAL '90 seconds' AS wait, "
           "'NaN'::float8 AS nan, 9007199254740993::bigint AS big, B'101' AS bits, TIME '10:11:12' AS t")
    status, body, _ = await api.post("/query", {"query": sql}, key=api.keys["analyst"])
    assert status == 200, body
    row = body["data"][0]
    assert row["price"] == 12.345
    assert row["exact"] == 0.3
    assert row["at"] == "2026-03-04T05:06:07+00:00"
    assert row["id"] == "6f1a4b9e-3c55-4f0e-9d2b-1c2d3e4f5a6b"
    assert row["doc"] == {"a": [1, 2], "b": None}
    assert row["plain_json"] == [1, "x"]
    assert row["ints"] == [1, 2, 3] and row["texts"] == ["a", None]
    assert row["raw"] == "3q2+7w=="  # base64 of de ad be ef
    assert row["addr"] == "192.168.0.1/24"
    assert row["span"] == {"lower": 1, "upper": 5, "lower_inc": True, "upper_inc": False, "empty": False}
    assert row["wait"] == 90.0
    assert row["nan"] == "nan"
    assert row["big"] == 9007199254740993
    assert row["bits"] == "101"
    assert row["t"] == "10:11:12"


async def test_create_customer_and_duplicate_phone_is_a_plain_409(api: RunningServer, pg_server: PgServer,  # noqa: F811
                                                                  pg_db: str) -> None:  # noqa: F811
    body_in = {"action": "create_customer", "params": {"name": "Zed Quinn", "phone": "+15550001111",
                                                       "email": "zed@example.com"}}
    status, body, _ = await api.post("/action", body_in, key=api.keys["writer"])
    assert status == 200, body
    assert body["data"]["name"] == "Zed Quinn" and body["data"]["account_status"] == "active"
    assert body["data"]["id"] == 301
    status, body, _ = await api.post("/action", body_in, key=api.keys["writer"])
    assert status == 409
    assert body == {"success": False, "code": "constraint_violation",
                    "error": "A record with the same phone already exists."}
    rows = await pg_server.owner(pg_db, "SELECT count(*) FROM customers WHERE phone = '+15550001111'")
    assert rows[0][0] == 1


async def test_create_order_reserves_stock_and_refuses_short_or_unknown(api: RunningServer, pg_server: PgServer,  # noqa: F811
                                                                       pg_db: str) -> None:  # noqa: F811
    items = [{"product_id": "JKT-BLU-L", "quantity": 2}, {"product_id": "SCF-RED", "quantity": 1}]
    before = dict(await pg_server.owner(pg_db, "SELECT product_id, quantity FROM inventory WHERE product_id "
                                                "IN ('JKT-BLU-L', 'SCF-RED')"))
    status, body, _ = await api.post("/action", {"action": "create_order", "params": {
        "customer_id": 7, "items": items}}, key=api.keys["writer"])
    assert status == 200, body
    assert body["data"]["items"] == items and body["data"]["status"] == "pending"
    after = dict(await pg_server.owner(pg_db, "SELECT product_id, quantity FROM inventory WHERE product_id "
                                               "IN ('JKT-BLU-L', 'SCF-RED')"))
    assert after == {"JKT-BLU-L": before["JKT-BLU-L"] - 2, "SCF-RED": before["SCF-RED"] - 1}

    orders = (await pg_server.owner(pg_db, "SELECT count(*) FROM orders"))[0][0]
    status, body, _ = await api.post("/action", {"action": "create_order", "params": {
        "customer_id": 7, "items": [{"product_id": "JKT-BLU-L", "quantity": 999},
                                    {"product_id": "SCF-RED", "quantity": 1}]}}, key=api.keys["writer"])
    assert status == 409 and body["code"] == "insufficient_stock"
    assert "JKT-BLU-L" in body["error"] and "999 wanted" in body["error"]
    status, body, _ = await api.post("/action", {"action": "create_order", "params": {
        "customer_id": 99999, "items": items}}, key=api.keys["writer"])
    assert status == 404 and body["code"] == "customer_not_found"
    # Nothing half-written: stock and orders as after the one good order.
    assert dict(await pg_server.owner(pg_db, "SELECT product_id, quantity FROM inventory WHERE product_id "
                                              "IN ('JKT-BLU-L', 'SCF-RED')")) == after
    assert (await pg_server.owner(pg_db, "SELECT count(*) FROM orders"))[0][0] == orders


async def test_parallel_orders_on_limited_stock_sell_exactly_the_stock(api: RunningServer, pg_server: PgServer,  # noqa: F811
                                                                      pg_db: str) -> None:  # noqa: F811
    await pg_server.owner(pg_db, "UPDATE inventory SET quantity = 7 WHERE product_id = 'UMB-BLK'")
    orders_before = (await pg_server.owner(pg_db, "SELECT count(*) FROM orders"))[0][0]

    async def order(i: int) -> tuple[int, str | None]:
        # Some orders also take a second product, in either order, to provoke lock-order deadlocks.
        items = [{"product_id": "UMB-BLK", "quantity": 1}]
        if i % 3 == 1:
            items.append({"product_id": "SCK-WOL-3P", "quantity": 1})
        elif i % 3 == 2:
            items.insert(0, {"product_id": "SCK-WOL-3P", "quantity": 1})
        status, body, _ = await api.post("/action", {"action": "create_order", "params": {
            "customer_id": 1 + i % 50, "items": items}}, key=api.keys["writer"])
        return status, body.get("code")

    await pg_server.owner(pg_db, "UPDATE inventory SET quantity = 1000 WHERE product_id = 'SCK-WOL-3P'")
    socks_query = "SELECT count(*) FROM orders WHERE items @> '[{\"product_id\": \"SCK-WOL-3P\"}]'"
    socks_orders_before = (await pg_server.owner(pg_db, socks_query))[0][0]
    results = await asyncio.gather(*(order(i) for i in range(100)))
    successes = [r for r in results if r[0] == 200]
    assert len(successes) == 7, results
    assert {r for r in results if r[0] != 200} == {(409, "insufficient_stock")}
    assert (await pg_server.owner(pg_db, "SELECT quantity FROM inventory WHERE product_id = 'UMB-BLK'"))[0][0] == 0
    assert (await pg_server.owner(pg_db, "SELECT count(*) FROM orders"))[0][0] == orders_before + 7
    sold_socks = 1000 - (await pg_server.owner(
        pg_db, "SELECT quantity FROM inventory WHERE product_id = 'SCK-WOL-3P'"))[0][0]
    assert sold_socks == (await pg_server.owner(pg_db, socks_query))[0][0] - socks_orders_before


async def test_action_needs_the_action_scope_and_sql_needs_sql(api: RunningServer) -> None:
    status, _, _ = await api.post("/query", {"query": "SELECT 1"}, key=api.keys["writer"])
    assert status == 403
    status, _, _ = await api.post("/action", {"action": "create_customer", "params": {
        "name": "A", "phone": "+15550002222"}}, key=api.keys["reader"])
    assert status == 403


async def test_schema_lists_tables_with_columns_and_counts(api: RunningServer, pg_server: PgServer) -> None:  # noqa: F811
    db = await api.bridge.database()
    tables = {t.name: t for t in await db.schema()}
    assert set(tables) == {"customers", "inventory", "orders"}
    assert tables["customers"].row_count == 300
    columns = {c.name: c for c in tables["orders"].columns}
    assert columns["id"].primary_key and not columns["id"].nullable
    assert columns["items"].type == "jsonb"
    assert db.describe() == f"PostgreSQL database {api.bridge.database_url.rsplit('/', 1)[1]!r} on " \
        f"127.0.0.1:5432 as {pg_server.role!r}"
    assert pg_server.password not in db.describe()


async def test_mcp_client_runs_the_demo_tools_on_postgresql(api: RunningServer) -> None:
    """The official MCP SDK client, unchanged, against a PostgreSQL-backed server."""
    import json

    import httpx2
    from mcp.client.client import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"x-api-key": api.keys["writer"]}) as http, \
            Client(streamable_http_client(api.url + "/mcp", http_client=http), mode="legacy") as client:
        found = await client.call_tool("find_customer_by_phone", {"phone": PHONE})
        assert found.structured_content["rows"][0]["name"] == "Ava Martin"
        placed = await client.call_tool("create_order", {
            "customer_id": 1, "items": [{"product_id": "JKT-BLU-M", "quantity": 1}]})
        assert placed.structured_content["items"] == [{"product_id": "JKT-BLU-M", "quantity": 1}]
        short = await client.call_tool("create_order", {
            "customer_id": 1, "items": [{"product_id": "JKT-BLU-M", "quantity": 999}]})
        assert short.is_error is True and "Not enough stock of JKT-BLU-M" in short.content[0].text
        stock = await client.call_tool("check_inventory", {"product_id": "JKT-BLU-M"})
        assert stock.structured_content["rows"][0]["quantity"] == 2
        schema = await client.read_resource("voka://schema")
        document = json.loads(schema.contents[0].text)
        assert document["engine"] == "postgresql"
        assert {t["name"] for t in document["tables"]} == {"customers", "inventory", "orders"}


async def test_public_asyncpg_path_gives_the_same_answers(api: RunningServer, monkeypatch) -> None:
    """The one-round-trip fast path uses an asyncpg internal when its signature is the known one; the
    public prepare/cursor path must answer identically wherever that internal changes."""
    import server.db.postgres as backend

    assert backend._BIND_EXECUTE is True  # the installed asyncpg has the known signature
    answers = {}
    for fast in (True, False):
        monkeypatch.setattr(backend, "_BIND_EXECUTE", fast)
        lookup = await api.post("/query", {"query": "SELECT name FROM customers WHERE phone = $1",
                                           "args": [PHONE]}, key=api.keys["analyst"])
        capped = await api.post("/query", {"query": "SELECT a.id FROM customers a, customers b"},
                                key=api.keys["analyst"])
        created = await api.post("/action", {"action": "create_customer", "params": {
            "name": f"Path {fast}", "phone": f"+1555000{int(fast)}444"}}, key=api.keys["writer"])
        answers[fast] = (lookup[0], lookup[1]["data"], capped[0], capped[1]["count"], capped[1]["truncated"],
                         created[0], created[1]["data"]["account_status"])
    assert answers[True] == answers[False] == (200, [{"name": "Ava Martin"}], 200, 1000, True, 200, "active")
