"""Tools page: edits go live on /query and MCP tools/list; templates, test (rolled back), suggestions."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.app.conftest import call


def _page(desktop, qtbot):
    page = desktop.window.show_page("Tools")
    qtbot.waitUntil(lambda: page.doc is not None and page.current is not None, timeout=5000)
    return page


def mcp_tools(url: str, key: str) -> dict[str, str]:
    async def go() -> dict[str, str]:
        async with httpx2.AsyncClient(headers={"x-api-key": key}) as http:
            transport = streamable_http_client(url + "/mcp", http_client=http)
            async with Client(transport, mode="legacy") as client:
                return {t.name: t.description or "" for t in (await client.list_tools()).tools}

    return asyncio.run(go())


def test_editing_a_tool_changes_query_answers_and_mcp_tools_list(desktop, qtbot):
    page = _page(desktop, qtbot)
    url, key = desktop.controller.local_url, desktop.server.first_key
    body = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}
    assert "note" not in call(url, "/query", body, key=key)[1]["data"][0]
    page.select_tool("check_inventory")
    page.sql.setPlainText("SELECT product_id, name, quantity, location, 'edited in the app' AS note "
                          "FROM inventory WHERE product_id = :product_id")
    page.description.setPlainText("Stock of one product (edited).")
    assert page.dirty
    page.save_button.click()
    qtbot.waitUntil(lambda: page.message.text().startswith("Saved check_inventory"), timeout=5000)
    qtbot.waitUntil(lambda: call(url, "/query", body, key=key)[1]["data"][0].get("note") == "edited in the app",
                    timeout=5000)
    assert mcp_tools(url, key)["check_inventory"] == "Stock of one product (edited)."
    text = desktop.server.paths.tools_file.read_text()
    assert "edited in the app" in text
    assert "# Voka Bridge tool catalog" in text  # the owner's comments survive


def test_invalid_edit_is_refused_and_changes_nothing(desktop, qtbot):
    page = _page(desktop, qtbot)
    before = desktop.server.paths.tools_file.read_text()
    page.select_tool("check_inventory")
    page.sql.setPlainText("SELECT * FROM inventory WHERE product_id = :sku")
    page.save_button.click()
    qtbot.waitUntil(lambda: page.message.text().startswith("Not saved"), timeout=5000)
    assert ":sku" in page.message.text() and "declared" in page.message.text()
    assert desktop.server.paths.tools_file.read_text() == before
    page.name.setText("Bad Name")
    page.save_button.click()
    qtbot.waitUntil(lambda: "lowercase" in page.message.text(), timeout=5000)


def test_template_test_duplicate_and_delete(desktop, qtbot):
    page = _page(desktop, qtbot)
    url, key = desktop.controller.local_url, desktop.server.first_key
    template = next(a for a in page.new_button.menu().actions() if "Find customer by phone" in a.text())
    template.trigger()
    assert page.name.text() == "find_customer_by_phone_2" and page.current is None
    page.prepare_test()
    page.test_form.set_value("phone", "+15551234567")
    page.run_test()
    qtbot.waitUntil(lambda: "row(s) in" in page.test_output.toPlainText(), timeout=5000)
    page.save_button.click()
    qtbot.waitUntil(lambda: page.current == "find_customer_by_phone_2", timeout=5000)
    qtbot.waitUntil(lambda: call(url, "/query", {"name": "find_customer_by_phone_2",
                                                 "params": {"phone": "+15551234567"}}, key=key)[0] == 200,
                    timeout=5000)
    page.duplicate_button.click()
    assert page.name.text() == "find_customer_by_phone_2_copy"
    page.save_button.click()
    qtbot.waitUntil(lambda: page.current == "find_customer_by_phone_2_copy", timeout=5000)
    page.confirm = lambda title, text: True
    page.delete_button.click()
    qtbot.waitUntil(lambda: "find_customer_by_phone_2_copy" not in page.doc.names(), timeout=5000)
    qtbot.waitUntil(lambda: call(url, "/query", {"name": "find_customer_by_phone_2_copy",
                                                 "params": {"phone": "+15551234567"}}, key=key)[0] == 404,
                    timeout=5000)


def test_testing_an_action_changes_nothing(desktop, qtbot):
    page = _page(desktop, qtbot)
    db = desktop.server.paths.demo_db
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    page.select_tool("create_customer")
    page.prepare_test()
    page.test_form.set_value("name", "Test Person")
    page.test_form.set_value("phone", "+15550009999")
    page.run_test()
    qtbot.waitUntil(lambda: "rolled back" in page.test_output.toPlainText(), timeout=5000)
    answer = json.loads(page.test_output.toPlainText().split("\n\n", 1)[1])
    assert answer["name"] == "Test Person"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == before
    page.select_tool("create_order")
    page.prepare_test()
    page.test_form.set_value("customer_id", "1")
    page.test_form.set_value("items", '[{"product_id": "JKT-BLU-M", "quantity": 1000}]')
    page.run_test()
    qtbot.waitUntil(lambda: "Not enough stock of JKT-BLU-M" in page.test_output.toPlainText(), timeout=5000)


def test_suggested_tool_is_added_and_callable(desktop, qtbot):
    page = _page(desktop, qtbot)
    url, key = desktop.controller.local_url, desktop.server.first_key
    page.open_suggestions()
    qtbot.waitUntil(lambda: page.suggest_dialog is not None, timeout=5000)
    names = [s.name for s in page.suggest_dialog.suggestions]
    assert "find_customer_by_email" in names and "check_inventory" not in names
    page.suggest_dialog.tick("find_customer_by_email")
    page.suggest_dialog.accept()
    qtbot.waitUntil(lambda: page.current == "find_customer_by_email", timeout=5000)
    with sqlite3.connect(desktop.server.paths.demo_db) as conn:
        email = conn.execute("SELECT email FROM customers WHERE email IS NOT NULL LIMIT 1").fetchone()[0]
    qtbot.waitUntil(lambda: call(url, "/query", {"name": "find_customer_by_email", "params": {"email": email}},
                                 key=key)[0] == 200, timeout=5000)
    assert call(url, "/query", {"name": "find_customer_by_email", "params": {"email": email}},
                key=key)[1]["data"][0]["email"] == email


SHORT_ORDER = {"action": "create_order",
               "params": {"customer_id": 1, "items": [{"product_id": "JKT-BLU-M", "quantity": 1000}]}}


def test_steps_of_a_multi_step_action_are_edited_in_the_page(desktop, qtbot):
    page = _page(desktop, qtbot)
    url, key = desktop.controller.local_url, desktop.server.first_key
    status, body = call(url, "/action", SHORT_ORDER, key=key)
    assert status == 409 and body["error"].startswith("Not enough stock of JKT-BLU-M")
    page.select_tool("create_order")
    steps = page.steps_editor
    assert not steps.isHidden() and page.sql.isHidden()
    assert steps.list.count() == 4
    steps.select_step(1)
    assert steps.condition.currentText() == "when it returns rows"
    assert steps.engine.currentText() == "sqlite" and "json_each(:items)" in steps.sql.toPlainText()
    assert steps.code.text() == "insufficient_stock"
    steps.message.setText("Sorry, only {available} of {product_id} left.")
    steps.message.textEdited.emit(steps.message.text())
    assert page.dirty
    page.save_button.click()
    qtbot.waitUntil(lambda: page.message.text().startswith("Saved create_order"), timeout=5000)
    qtbot.waitUntil(lambda: call(url, "/action", SHORT_ORDER, key=key)[1]["error"]
                    == "Sorry, only 3 of JKT-BLU-M left.", timeout=5000)
    assert call(url, "/action", SHORT_ORDER, key=key)[0] == 409
    text = desktop.server.paths.tools_file.read_text()
    assert "Sorry, only {available} of {product_id} left." in text
    assert "# Voka Bridge tool catalog" in text  # the owner's comments survive
    assert "FOR UPDATE  -- one lock order" in text  # the other engine's SQL is kept as it was


def test_step_reorder_add_remove_and_an_invalid_step_is_refused(desktop, qtbot):
    page = _page(desktop, qtbot)
    before = desktop.server.paths.tools_file.read_text()
    page.select_tool("create_order")
    steps = page.steps_editor
    steps.select_step(0)
    steps.down_button.click()
    assert steps.steps()[1]["fail_if_none"].startswith("There is no customer")
    steps.up_button.click()
    steps.add_button.click()
    assert steps.list.count() == 5 and steps.current_row() == 1
    steps.sql.setPlainText("SELECT 1 FROM inventory WHERE product_id = :nope")
    page.save_button.click()
    qtbot.waitUntil(lambda: page.message.text().startswith("Not saved"), timeout=5000)
    assert ":nope" in page.message.text()
    assert desktop.server.paths.tools_file.read_text() == before
    steps.remove_button.click()
    assert steps.steps() == page.doc.spec("create_order")["steps"]  # back to the saved steps, in order
