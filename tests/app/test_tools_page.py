"""Tools page: edits go live on /query and MCP tools/list; templates, test (rolled back), suggestions."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.app.conftest import call
from tests.postgres_support import PgServer, pg_server  # noqa: F401  (fixture)


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
    shown = [page.suggest_dialog.list.item(row).text() for row in range(page.suggest_dialog.list.count())]
    assert "get_customer  —  Voka can fetch one of customers by its id, which is different for each" in shown
    assert not [text for text in shown if "primary key" in text]
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


# ---- a broken tool cannot go live unnoticed (issue 16) -----------------------------------------------
BROKEN_SQL = "SELEC name FROM productz WHERE"


def _question(page, qtbot):
    qtbot.waitUntil(lambda: page.save_question is not None and page.save_question.isVisible(), timeout=10_000)
    return page.save_question


def _answer(box, button) -> None:
    box.button(button).click()


def _new_tool(page, name: str, spec: dict) -> None:
    page.new_from_spec(name, {"description": "Made by the test.", **spec})
    assert page.name.text() == name and page.current is None


def _saves_without_a_question(page, qtbot, name: str) -> None:
    page.save_button.click()
    qtbot.waitUntil(lambda: page.message.text().startswith(f"Saved {name}; Voka sees it now."), timeout=10_000)
    assert page.save_question is None and page.current == name
    assert "error" not in page.message.text()


def _broken_tool_asks_before_saving(app, page, qtbot, database_says: str, secret: str | None = None) -> None:
    """Save a tool whose SQL does not prepare: the owner reads the database's own words and decides."""
    from PySide6.QtWidgets import QMessageBox

    tools_file = app.server.paths.tools_file
    before = tools_file.read_text()
    url, key = app.controller.local_url, app.server.first_key
    _new_tool(page, "broken_lookup", {"kind": "query", "sql": BROKEN_SQL})
    page.save_button.click()
    box = _question(page, qtbot)
    shown = box.text()
    assert database_says in shown and "broken_lookup" in shown
    assert box.informativeText() == "Save anyway? Voka will get an error when it uses it."
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.No)
    assert box.escapeButton() is box.button(QMessageBox.StandardButton.No)
    assert database_says in page.message.text()
    _answer(box, QMessageBox.StandardButton.No)
    qtbot.waitUntil(lambda: page.save_question is None, timeout=5000)
    assert page.message.text().startswith("Not saved") and database_says in page.message.text()
    assert tools_file.read_text() == before and "broken_lookup" not in page.doc.names()
    assert page.dirty and page.sql.toPlainText() == BROKEN_SQL  # the edit is still there to fix

    page.save_button.click()
    _answer(_question(page, qtbot), QMessageBox.StandardButton.Yes)
    qtbot.waitUntil(lambda: page.current == "broken_lookup", timeout=10_000)
    assert "broken_lookup" in tools_file.read_text() and BROKEN_SQL in tools_file.read_text()
    assert "will get an error" in page.message.text() and database_says in page.message.text()
    if secret is not None:
        assert secret not in shown + page.message.text()

    # Voka is told nothing about the SQL; the owner's own Test shows the database's words
    qtbot.waitUntil(lambda: call(url, "/query", {"name": "broken_lookup"}, key=key)[0] == 500, timeout=10_000)
    status, body = call(url, "/query", {"name": "broken_lookup"}, key=key)
    assert status == 500 and body["code"] == "tool_failed"
    assert "SELEC" not in json.dumps(body) and "productz" not in json.dumps(body)
    page.prepare_test()
    page.run_test()
    qtbot.waitUntil(lambda: database_says in page.test_output.toPlainText(), timeout=10_000)
    assert "the owner can see why in the log" not in page.test_output.toPlainText()


def _checking_actions_runs_nothing(app, page, qtbot, counts, step_says: str) -> None:
    """An action is prepared, never run: not when it is fine, not when a later step is broken."""
    from PySide6.QtWidgets import QMessageBox

    before = counts()
    _new_tool(page, "zero_all_stock", {"kind": "action", "sql": "UPDATE inventory SET quantity = 0"})
    _saves_without_a_question(page, qtbot, "zero_all_stock")
    _new_tool(page, "add_walk_in", {"kind": "action", "sql": "INSERT INTO customers (name, phone) VALUES "
                                                             "('Walk In', '+15550000042') RETURNING id"})
    _saves_without_a_question(page, qtbot, "add_walk_in")
    assert counts() == before
    _new_tool(page, "add_then_fail", {"kind": "action", "steps": [
        {"sql": "INSERT INTO customers (name, phone) VALUES ('Step One', '+15550000043')"},
        {"sql": "UPDATE productz SET quantity = 0"}]})
    page.save_button.click()
    box = _question(page, qtbot)
    assert f"step 2: {step_says}" in box.text() and "step 1" not in box.text()
    assert page.steps_editor.current_row() == 1  # the step the database refuses is the one shown
    _answer(box, QMessageBox.StandardButton.No)
    qtbot.waitUntil(lambda: page.message.text().startswith("Not saved"), timeout=5000)
    assert counts() == before


def _sqlite_counts(app):
    def counts() -> tuple[int, int]:
        with sqlite3.connect(app.server.paths.demo_db) as conn:
            return (conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0],
                    conn.execute("SELECT SUM(quantity) FROM inventory").fetchone()[0])
    return counts


def test_a_broken_tool_asks_before_saving_and_shows_the_database_message(desktop, qtbot):
    page = _page(desktop, qtbot)
    _broken_tool_asks_before_saving(desktop, page, qtbot, 'near "SELEC": syntax error')


def test_a_good_tool_saves_without_a_question(desktop, qtbot):
    page = _page(desktop, qtbot)
    _new_tool(page, "list_products", {"kind": "query", "sql": "SELECT product_id, name FROM inventory"})
    _saves_without_a_question(page, qtbot, "list_products")
    assert "list_products" in desktop.server.paths.tools_file.read_text()


def test_checking_an_action_on_save_never_runs_it(desktop, qtbot):
    page = _page(desktop, qtbot)
    _checking_actions_runs_nothing(desktop, page, qtbot, _sqlite_counts(desktop), "no such table: productz")


def test_a_query_that_would_write_is_named_on_save(desktop, qtbot):
    from PySide6.QtWidgets import QMessageBox

    page = _page(desktop, qtbot)
    counts = _sqlite_counts(desktop)
    before = counts()
    _new_tool(page, "sneaky", {"kind": "query", "sql": "DELETE FROM customers"})
    page.save_button.click()
    box = _question(page, qtbot)
    assert "not authorized" in box.text() and "a query may only read" in box.text()
    _answer(box, QMessageBox.StandardButton.No)
    qtbot.waitUntil(lambda: page.message.text().startswith("Not saved"), timeout=5000)
    assert counts() == before


def test_tools_page_says_what_each_setting_means_for_the_shop(desktop, qtbot):
    page = _page(desktop, qtbot)
    page.select_tool("check_inventory")
    assert page.kind.currentText() == "Voka can look this up (reads only)"
    assert page.who_may.text().startswith("Keys that may look things up")
    page.select_tool("create_customer")
    assert page.kind.currentText() == "Voka can change this (adds or updates data)"
    assert page.who_may.text().startswith("Only keys that may make changes")
    header = page.params.horizontalHeaderItem(4)
    assert header.text() == "Allowed form\n(advanced)" and "regular expression" in header.toolTip()
    labels = [page.params.horizontalHeaderItem(c).text() for c in range(page.params.columnCount())]
    assert "Pattern" not in labels
    assert page.collect()[1]["kind"] == "action"  # tools.toml keeps its own words
    assert page.collect()[1]["params"]["email"]["pattern"] == r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def test_on_postgresql_a_broken_tool_asks_and_an_action_is_never_run(make_desktop, pg_server: PgServer,  # noqa: F811
                                                                    qtbot, monkeypatch):
    database = asyncio.run(pg_server.new_database())
    monkeypatch.setenv("DATABASE_URL", pg_server.url(database))  # the password with it, as a headless box has
    app = None
    try:
        app = make_desktop()
        assert app.server.bridge.database_url.startswith("postgresql:")
        page = _page(app, qtbot)

        def counts() -> tuple[int, int]:
            rows = asyncio.run(pg_server.owner(database, "SELECT (SELECT count(*) FROM customers) AS c, "
                                                         "(SELECT sum(quantity) FROM inventory) AS q"))
            return rows[0]["c"], rows[0]["q"]

        _broken_tool_asks_before_saving(app, page, qtbot, 'syntax error at or near "SELEC"',
                                        secret=pg_server.password)
        _checking_actions_runs_nothing(app, page, qtbot, counts, 'relation "productz" does not exist')
        _new_tool(page, "list_products", {"kind": "query", "sql": "SELECT product_id, name FROM inventory"})
        _saves_without_a_question(page, qtbot, "list_products")
        assert counts()[0] == 300  # the demo's customers, none added by any check
    finally:
        if app is not None:
            app.shutdown()
        asyncio.run(pg_server.drop_database(database))
