"""tools.toml editing: comments kept, invalid edits refused with nothing written, templates, suggestions,
and 'test this tool' against a real SQLite database with actions rolled back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from server.catalog import Catalog
from server.catalog_edit import CatalogDocument
from server.config import ConfigError
from server.db.sqlite import SqliteDatabase
from server.errors import BridgeError
from server.suggest import suggest
from server.tool_templates import templates
from server.tool_test import tool_from_spec, try_tool


def test_edit_keeps_comments_and_other_tools_byte_for_byte(home):
    doc = CatalogDocument.load(home.tools_file)
    before = home.tools_file.read_text()
    spec = doc.spec("check_inventory")
    spec["description"] = "Changed."
    updated = doc.with_tool("check_inventory", spec, replacing="check_inventory")
    updated.save()
    after = home.tools_file.read_text()
    assert "Changed." in after and after.startswith(before.split("[tools.", 1)[0])
    create_order = before[before.index("[tools.create_order]"):]
    assert create_order in after  # untouched tools keep their exact text
    assert Catalog.load(home.tools_file).get("check_inventory").description == "Changed."  # type: ignore[union-attr]


def test_invalid_edits_raise_and_write_nothing(home):
    doc = CatalogDocument.load(home.tools_file)
    before = home.tools_file.read_text()
    spec = doc.spec("check_inventory")
    spec["sql"] = "SELECT * FROM inventory WHERE product_id = :nope"
    with pytest.raises(ConfigError, match="nope"):
        doc.with_tool("check_inventory", spec, replacing="check_inventory")
    with pytest.raises(ConfigError, match="lowercase"):
        doc.with_tool("Bad-Name", doc.spec("check_inventory"))
    with pytest.raises(ConfigError, match="already exists"):
        doc.with_tool("get_order_status", doc.spec("check_inventory"), replacing="check_inventory")
    assert home.tools_file.read_text() == before
    assert "check_inventory" in doc.names()


def test_rename_duplicate_and_delete(home):
    doc = CatalogDocument.load(home.tools_file)
    renamed = doc.with_tool("inventory_level", doc.spec("check_inventory"), replacing="check_inventory")
    assert "check_inventory" not in renamed.names() and "inventory_level" in renamed.names()
    assert doc.free_name("check_inventory") == "check_inventory_2"
    removed = renamed.without_tool("inventory_level")
    removed.save()
    assert "inventory_level" not in Catalog.load(home.tools_file).tools


def test_templates_are_valid_and_cover_the_common_cases():
    found = {t.key: t for t in templates()}
    assert set(found) == {"lookup_by_phone", "inventory_check", "create_customer", "create_order"}
    for template in found.values():
        tool_from_spec(template.name, template.spec)


async def test_suggestions_from_a_real_schema_are_valid_tools(home):
    db = SqliteDatabase(home.demo_db)
    await db.open()
    try:
        found = suggest(await db.schema(), {"check_inventory"})
    finally:
        await db.close()
    names = {s.name for s in found}
    assert {"find_customer_by_phone", "find_customer_by_email", "get_order"} <= names
    assert "check_inventory" not in names
    Catalog.from_dict({"tools": {s.name: s.spec for s in found}})


async def test_try_tool_runs_queries_and_rolls_actions_back(make_server, home: Path):
    server = await make_server()
    bridge = server.bridge
    tool = tool_from_spec("probe", {"kind": "query", "description": "d",
                                    "sql": "SELECT COUNT(*) AS n FROM customers WHERE id >= :low",
                                    "params": {"low": {"type": "integer"}}})
    result = await try_tool(bridge, tool, {"low": 1})
    assert result.rows == 1 and result.data[0]["n"] > 0 and not result.rolled_back
    with sqlite3.connect(home.demo_db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    create = bridge.catalog.get("create_customer")
    assert create is not None
    result = await try_tool(bridge, create, {"name": "Rolled Back", "phone": "+15550001234"})
    assert result.rolled_back and result.data["name"] == "Rolled Back"
    with sqlite3.connect(home.demo_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == before
    order = bridge.catalog.get("create_order")
    assert order is not None
    with pytest.raises(BridgeError, match="Not enough stock") as refused:
        await try_tool(bridge, order, {"customer_id": 1, "items": [{"product_id": "JKT-BLU-M", "quantity": 1000}]})
    assert refused.value.status == 409 and refused.value.code == "insufficient_stock"
