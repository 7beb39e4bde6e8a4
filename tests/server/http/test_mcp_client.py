"""The official MCP Python SDK client against the real server: both connect modes, every demo tool."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

DEMO_TOOLS = {"find_customer_by_phone", "check_inventory", "get_order_status", "create_customer", "create_order"}
KNOWN_PHONE = "+15558594448"  # Ava Martin in resources/demo/data.sql
MODES = ["legacy", "auto"]


@asynccontextmanager
async def connect(server: Any, key: str, mode: str, **options: Any) -> AsyncIterator[Client]:
    """An SDK client sending the API key the way Voka does (x-api-key on every request)."""
    async with httpx2.AsyncClient(headers={"x-api-key": key}) as http:
        transport = streamable_http_client(server.url + "/mcp", http_client=http)
        async with Client(transport, mode=mode, **options) as client:
            yield client


async def audit_rows(server: Any) -> list[dict[str, Any]]:
    await server.bridge.audit.flush()
    return await server.bridge.on_state(server.bridge.audit.recent, 200)


@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
async def test_connect_negotiates_the_expected_era(server, mode, version):
    async with connect(server, server.keys["writer"], mode) as client:
        assert client.protocol_version == version
        assert client.server_capabilities.tools is not None
        assert client.server_capabilities.resources is not None
        if mode == "legacy":
            assert client.server_info is not None and client.server_info.name == "voka-bridge"


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_matches_the_catalog(server, mode):
    async with connect(server, server.keys["writer"], mode) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) == DEMO_TOOLS
    catalog = server.bridge.catalog
    for name, tool in listed.items():
        source = catalog.get(name)
        assert tool.input_schema == source.input_schema
        assert tool.description == source.description
        assert tool.title == source.title
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (source.kind == "query")
        if source.kind == "action":
            assert tool.annotations.destructive_hint is source.destructive
    phone = listed["find_customer_by_phone"].input_schema["properties"]["phone"]
    assert phone["pattern"] == r"^\+?[0-9]{7,15}$"
    assert listed["get_order_status"].input_schema["properties"]["order_id"]["minimum"] == 1


@pytest.mark.parametrize("mode", MODES)
async def test_every_demo_tool_runs(server, mode):
    phone = "+1555000" + ("1111" if mode == "legacy" else "2222")
    async with connect(server, server.keys["writer"], mode) as client:
        found = await client.call_tool("find_customer_by_phone", {"phone": KNOWN_PHONE})
        assert found.is_error is False
        assert found.structured_content["count"] == 1
        assert found.structured_content["rows"][0]["name"] == "Ava Martin"
        assert json.loads(found.content[0].text) == found.structured_content

        stock = await client.call_tool("check_inventory", {"product_id": "JKT-BLU-M"})
        assert stock.structured_content["rows"][0]["quantity"] == 3

        status = await client.call_tool("get_order_status", {"order_id": 1})
        order = status.structured_content["rows"][0]
        assert order["id"] == 1 and isinstance(order["items"], list)

        created = await client.call_tool("create_customer", {"name": "Test Person", "phone": phone})
        assert created.is_error is False
        customer = created.structured_content
        assert customer["phone"] == phone and isinstance(customer["id"], int)

        placed = await client.call_tool("create_order", {
            "customer_id": customer["id"], "items": [{"product_id": "JKT-BLU-M", "quantity": 1}]})
        assert placed.is_error is False
        assert placed.structured_content["status"] == "pending"
        assert placed.structured_content["items"] == [{"product_id": "JKT-BLU-M", "quantity": 1}]

        after = await client.call_tool("check_inventory", {"product_id": "JKT-BLU-M"})
        assert after.structured_content["rows"][0]["quantity"] == 2
        again = await client.call_tool("find_customer_by_phone", {"phone": phone})
        assert again.structured_content["rows"][0]["id"] == customer["id"]


@pytest.mark.parametrize("mode", MODES)
async def test_business_and_validation_failures_are_tool_errors(server, mode):
    async with connect(server, server.keys["writer"], mode) as client:
        duplicate = await client.call_tool("create_customer", {"name": "Copy", "phone": KNOWN_PHONE})
        assert duplicate.is_error is True
        assert "already exists" in duplicate.content[0].text

        short = await client.call_tool("create_order", {
            "customer_id": 1, "items": [{"product_id": "JKT-BLU-M", "quantity": 999}]})
        assert short.is_error is True
        assert "Not enough stock of JKT-BLU-M" in short.content[0].text

        invalid = await client.call_tool("find_customer_by_phone", {"phone": "call me"})
        assert invalid.is_error is True
        assert "phone" in invalid.content[0].text

        stock = await client.call_tool("check_inventory", {"product_id": "JKT-BLU-M"})
        assert stock.structured_content["rows"][0]["quantity"] == 3  # the refused order reserved nothing
    rows = await audit_rows(server)
    codes = {row["error_code"] for row in rows if row["protocol"] == "mcp" and row["tool"] == "create_order"}
    assert "insufficient_stock" in codes


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_tool_is_a_protocol_error(server, mode):
    async with connect(server, server.keys["writer"], mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("drop_all_tables", {})
    assert caught.value.code == types.INVALID_PARAMS
    assert caught.value.message.startswith("Unknown tool")
    assert "drop_all_tables" not in caught.value.message  # the caller's text is never quoted back


@pytest.mark.parametrize("mode", MODES)
async def test_schema_resource_lists_and_reads(server, mode):
    async with connect(server, server.keys["reader"], mode) as client:
        listed = (await client.list_resources()).resources
        assert [str(r.uri) for r in listed] == ["voka://schema"]
        read = await client.read_resource("voka://schema")
    contents = read.contents[0]
    assert contents.mime_type == "application/json"
    schema = json.loads(contents.text)
    tables = {table["name"]: table for table in schema["tables"]}
    assert {"customers", "inventory", "orders"} <= set(tables)
    columns = {column["name"]: column for column in tables["customers"]["columns"]}
    assert columns["id"]["primary_key"] is True
    assert "phone" in columns
    assert tables["customers"]["row_count"] > 0


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_resource_is_an_error(server, mode):
    async with connect(server, server.keys["reader"], mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource("voka://nothing-here")
    assert caught.value.code in (-32002, types.INVALID_PARAMS)


@pytest.mark.parametrize("mode", MODES)
async def test_scopes_decide_the_tool_list(server, mode):
    async with connect(server, server.keys["reader"], mode) as reader, \
            connect(server, server.keys["analyst"], mode) as analyst:
        reader_tools = {t.name for t in (await reader.list_tools()).tools}
        analyst_tools = {t.name for t in (await analyst.list_tools()).tools}
        assert reader_tools == {"find_customer_by_phone", "check_inventory", "get_order_status"}
        assert analyst_tools == DEMO_TOOLS | {"run_sql"}
        with pytest.raises(MCPError) as caught:
            await reader.call_tool("create_customer", {"name": "No", "phone": "+15550009999"})
        assert caught.value.code == types.INVALID_PARAMS
        with pytest.raises(MCPError):
            await reader.call_tool("run_sql", {"query": "SELECT 1"})


@pytest.mark.parametrize("mode", MODES)
async def test_run_sql_reads_and_cannot_write(server, mode):
    async with connect(server, server.keys["analyst"], mode) as client:
        rows = await client.call_tool("run_sql", {"query": "SELECT id, name FROM customers WHERE id = $1",
                                                  "args": [1]})
        assert rows.is_error is False
        assert rows.structured_content["rows"] == [{"id": 1, "name": "Ava Martin"}]
        write = await client.call_tool("run_sql", {"query": "DELETE FROM customers"})
        assert write.is_error is True
        assert "read" in write.content[0].text.lower()
        count = await client.call_tool("run_sql", {"query": "SELECT COUNT(*) AS n FROM customers"})
        assert count.structured_content["rows"][0]["n"] > 0


async def test_two_keys_in_parallel_sessions_see_only_their_own_tools(server):
    restricted = await server.create_key("lookup-only", ("query",), tools=("check_inventory",))

    async def names(key: str) -> set[str]:
        async with connect(server, key, "legacy") as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    writer, limited = await asyncio.gather(names(server.keys["writer"]), names(restricted))
    assert writer == DEMO_TOOLS
    assert limited == {"check_inventory"}
    async with connect(server, restricted, "legacy") as client:
        with pytest.raises(MCPError):
            await client.call_tool("find_customer_by_phone", {"phone": KNOWN_PHONE})


async def test_audit_rows_name_protocol_tool_and_rows(server):
    async with connect(server, server.keys["writer"], "auto") as client:
        await client.call_tool("find_customer_by_phone", {"phone": KNOWN_PHONE})
        with pytest.raises(MCPError):
            await client.call_tool("no_such_tool", {})
    rows = [row for row in await audit_rows(server) if row["protocol"] == "mcp"]
    lookup = [row for row in rows if row["tool"] == "find_customer_by_phone"]
    assert lookup and lookup[0]["rows"] == 1 and lookup[0]["status"] == 200 and lookup[0]["error_code"] is None
    assert lookup[0]["key_name"] == "writer" and lookup[0]["route"] == "/mcp"
    unknown = [row for row in rows if row["tool"] == "no_such_tool"]
    assert unknown and unknown[0]["error_code"] == "unknown_tool"


async def test_legacy_session_hears_tools_list_changed(server):
    heard = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            heard.set()

    async with connect(server, server.keys["writer"], "legacy", message_handler=on_message) as client:
        await client.list_tools()
        service = _mcp_service(server)
        for _ in range(200):  # the client opens its GET stream in the background
            if any(session.streams for session in service.sessions.all()):
                break
            await asyncio.sleep(0.05)
        await _edit_catalog(server)
        await asyncio.wait_for(heard.wait(), 10)
        assert "check_stock_level" in {tool.name for tool in (await client.list_tools()).tools}


async def test_modern_listen_stream_hears_tools_list_changed(server):
    async with connect(server, server.keys["writer"], "auto") as client:
        async with client.listen(tools_list_changed=True) as subscription:
            await _edit_catalog(server)
            event = await asyncio.wait_for(anext(aiter(subscription)), 10)
        assert type(event).__name__ == "ToolsListChanged"
        assert "check_stock_level" in {tool.name for tool in (await client.list_tools()).tools}


def _mcp_service(server: Any) -> Any:
    from server.http.mcp import MCP

    return server.host.runner.app[MCP]


async def _edit_catalog(server: Any) -> None:
    """The owner adds a tool in tools.toml and the app reloads the catalog."""
    path = server.bridge.paths.tools_file
    text = path.read_text(encoding="utf-8")
    path.write_text(text + '\n[tools.check_stock_level]\nkind = "query"\ndescription = "Units in stock."\n'
                    'sql = "SELECT quantity FROM inventory WHERE product_id = :product_id"\n'
                    '[tools.check_stock_level.params.product_id]\ntype = "string"\n', encoding="utf-8")
    await server.bridge.reload_catalog()


async def test_streams_outlive_the_per_request_deadline(make_server):
    running = await make_server({"limits": {"request_timeout_seconds": 0.5}})
    key = await running.create_key("w", ("query", "action"))
    async with connect(running, key, "auto") as client:
        async with client.listen(tools_list_changed=True) as subscription:
            await asyncio.sleep(1.2)  # well past the deadline every other request gets
            await _edit_catalog(running)
            event = await asyncio.wait_for(anext(aiter(subscription)), 10)
        assert type(event).__name__ == "ToolsListChanged"
