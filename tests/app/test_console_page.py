"""Test console: real requests through the embedded server's HTTP port, validation first, exact curl."""

from __future__ import annotations

import json
import sqlite3
import subprocess

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLineEdit, QScrollArea

from app.widgets.param_form import hint
from server import keyadmin
from tests.app.conftest import write_config


def _listed(desktop, qtbot, page) -> None:
    """Wait until the page lists the catalog (the server's start reaches the window in a batch)."""
    catalog = desktop.server.bridge.catalog
    qtbot.waitUntil(lambda: page.tool_combo.count() == len(catalog) > 0, timeout=5000)


def _ready(desktop, qtbot):
    page = desktop.window.show_page("Test console")
    _listed(desktop, qtbot, page)
    qtbot.waitUntil(lambda: bool(page.keys), timeout=5000)
    page.select_key(page.keys[0].key_id)
    return page


def _with_key(desktop, qtbot, scopes: tuple[str, ...]):
    """The console page with a key of these scopes chosen, once the running server takes it."""
    record, secret = keyadmin.create_key(desktop.server.paths, "Console test " + " ".join(scopes), scopes)
    desktop.controller.keys_changed()
    qtbot.waitUntil(lambda: desktop.server.bridge.authenticate(secret) is not None, timeout=5000)
    page = desktop.window.show_page("Test console")
    qtbot.waitUntil(lambda: any(k.key_id == record.id for k in page.keys), timeout=5000)
    page.select_key(record.id)
    _listed(desktop, qtbot, page)
    return page


def _answer(page, qtbot) -> None:
    qtbot.waitUntil(lambda: page.status_label.text().startswith(("HTTP", "Not sent")), timeout=10_000)
    assert page.status_label.text().startswith("HTTP"), page.status_label.text()


def _table(page) -> list[list[str]]:
    model = page.answer.table.model()
    return [[model.index(r, c).data() for c in range(model.columnCount())] for r in range(model.rowCount())]


def _headers(page) -> list[str]:
    model = page.answer.table.model()
    return [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]


def test_console_sends_a_real_request_and_shows_the_real_answer(desktop, qtbot):
    page = _ready(desktop, qtbot)
    requests = desktop.window.pages["Requests"]
    page.select_tool("check_inventory")
    page.form.set_value("product_id", "JKT-BLU-M")
    with sqlite3.connect(desktop.server.paths.demo_db) as conn:
        quantity = conn.execute("SELECT quantity FROM inventory WHERE product_id = 'JKT-BLU-M'").fetchone()[0]
    page.send_button.click()
    qtbot.waitUntil(lambda: page.status_label.text().startswith("HTTP"), timeout=10_000)
    assert page.status_label.text().startswith("HTTP 200 (OK) in ")
    answer = json.loads(page.answer.json_text())
    assert answer["success"] is True and answer["data"][0]["quantity"] == quantity
    qtbot.waitUntil(lambda: requests.model.rowCount() >= 1, timeout=2000)
    assert requests.model.event_at(0).tool == "check_inventory"


def test_console_validates_before_sending(desktop, qtbot):
    page = _ready(desktop, qtbot)
    page.select_tool("find_customer_by_phone")
    page.form.set_value("phone", "not a phone")
    page.send_button.click()
    assert page.status_label.text().startswith("Not sent:")
    assert "expected format" in page.status_label.text()
    page.select_tool("get_order_status")
    page.form.set_value("order_id", "")
    page.send_button.click()
    assert "order_id is required" in page.status_label.text()
    qtbot.wait(300)
    assert desktop.window.pages["Requests"].model.total_seen == 0


def test_copy_as_curl_is_the_exact_working_command(desktop, qtbot):
    page = _ready(desktop, qtbot)
    page.select_tool("find_customer_by_phone")
    page.form.set_value("phone", "+15551234567")
    page.curl_button.click()
    command = QGuiApplication.clipboard().text()
    assert command.startswith("curl ") and "find_customer_by_phone" in command
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["success"] is True


def test_raw_sql_tab_needs_the_sql_scope(desktop, qtbot):
    page = _with_key(desktop, qtbot, ("query",))
    page.tabs.setCurrentIndex(1)
    page.sql_edit.setPlainText("SELECT name FROM customers WHERE id = $1")
    page.sql_args.setText("[1]")
    page.send_button.click()
    _answer(page, qtbot)
    assert page.status_label.text().startswith("HTTP 403 (refused)")
    assert page.answer.summary.text().startswith("Not done: ")
    page = _with_key(desktop, qtbot, ("query", "sql"))
    page.send_button.click()
    _answer(page, qtbot)
    assert page.status_label.text().startswith("HTTP 200")
    assert json.loads(page.answer.json_text())["count"] == 1
    page.sql_edit.setPlainText("DELETE FROM customers")
    page.sql_args.clear()
    page.send_button.click()
    qtbot.waitUntil(lambda: "HTTP 400" in page.status_label.text(), timeout=10_000)
    assert json.loads(page.answer.json_text())["code"] == "read_only"
    assert page.answer.summary.text().startswith("Not done: ")  # a refusal is a sentence, not a grid
    assert page.answer.stack.isHidden()
    page.sql_args.setText("{not json")
    page.send_button.click()
    assert "not valid JSON" in page.status_label.text()


def test_a_query_answer_is_a_table_with_the_json_one_click_away(desktop, qtbot):
    page = _with_key(desktop, qtbot, ("query",))
    page.select_tool("check_inventory")
    page.form.set_value("product_id", "JKT-BLU-M")
    page.send_button.click()
    _answer(page, qtbot)
    with sqlite3.connect(desktop.server.paths.demo_db) as conn:
        row = conn.execute("SELECT product_id, name, quantity, location FROM inventory "
                           "WHERE product_id = 'JKT-BLU-M'").fetchone()
    assert page.status_label.text().startswith("HTTP 200 (OK)")
    assert page.answer.stack.currentWidget() is page.answer.table and not page.answer.stack.isHidden()
    assert _headers(page) == ["product_id", "name", "quantity", "location"]
    assert _table(page) == [[str(v) for v in row]]
    assert page.answer.summary.text() == "1 row." and page.answer.cut_note.isHidden()

    page.answer.json_toggle.click()
    assert page.answer.stack.currentWidget() is page.answer.json_view
    assert page.answer.json_toggle.text() == "Show table"
    answer = json.loads(page.answer.json_view.toPlainText())
    assert [[str(r[h]) for h in _headers(page)] for r in answer["data"]] == _table(page)
    assert answer["count"] == 1 and answer["truncated"] is False
    page.answer.json_toggle.click()
    assert page.answer.stack.currentWidget() is page.answer.table


def test_many_rows_and_a_cut_answer_say_so(make_desktop, app_home, qtbot):
    write_config(app_home, "[limits]\nmax_rows = 10\n")
    desktop = make_desktop()
    page = _with_key(desktop, qtbot, ("query", "sql"))
    page.tabs.setCurrentIndex(1)
    page.sql_edit.setPlainText("SELECT id, name FROM customers WHERE id <= $1 ORDER BY id")
    page.sql_args.setText("[3]")
    page.send_button.click()
    _answer(page, qtbot)
    with sqlite3.connect(desktop.server.paths.demo_db) as conn:
        second = conn.execute("SELECT name FROM customers WHERE id = 2").fetchone()[0]
    assert _headers(page) == ["id", "name"]
    assert len(_table(page)) == 3 and _table(page)[1] == ["2", second]
    assert page.answer.summary.text() == "3 rows." and page.answer.cut_note.isHidden()

    page.sql_edit.setPlainText("SELECT id, name FROM customers ORDER BY id")
    page.sql_args.clear()
    page.send_button.click()
    _answer(page, qtbot)
    assert not page.answer.cut_note.isHidden(), page.answer.json_text()
    assert len(_table(page)) == 10
    assert "only the first 10 rows" in page.answer.cut_note.text()
    assert json.loads(page.answer.json_text())["truncated"] is True


def test_an_order_is_built_in_the_row_editor_and_placed(desktop, qtbot):
    page = _with_key(desktop, qtbot, ("query", "action"))
    page.select_tool("create_order")
    editor = page.form.fields["items"]
    with sqlite3.connect(desktop.server.paths.demo_db) as conn:
        products = [r[0] for r in conn.execute(
            "SELECT product_id FROM inventory WHERE quantity >= 5 ORDER BY product_id LIMIT 2")]
        stock = dict(conn.execute("SELECT product_id, quantity FROM inventory"))
        orders_before = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    assert [editor.table.horizontalHeaderItem(c).text() for c in range(editor.table.columnCount())] == \
        ["product_id *", "quantity *"]
    qtbot.keyClicks(page.form.fields["customer_id"], "1")
    for row, (product, quantity) in enumerate(zip(products, ("2", "3"), strict=True)):
        editor.add_button.click()
        qtbot.keyClicks(editor.cell(row, "product_id"), product)
        qtbot.keyClicks(editor.cell(row, "quantity"), quantity)
    assert editor.table.rowCount() == 2
    qtbot.keyClicks(editor.cell(1, "quantity"), "x")  # the whole-number check refuses the letter
    assert editor.cell(1, "quantity").text() == "3"

    editor.cell(1, "quantity").clear()
    page.send_button.click()
    assert page.status_label.text() == "Not sent: items row 2, quantity is empty."
    qtbot.keyClicks(editor.cell(1, "quantity"), "3")

    page.send_button.click()
    _answer(page, qtbot)
    assert page.status_label.text().startswith("HTTP 200 (OK)"), page.answer.json_text()
    assert _headers(page) == ["Field", "Value"]
    fields = dict(_table(page))
    assert fields["customer_id"] == "1" and fields["status"] == "pending"
    with sqlite3.connect(desktop.server.paths.demo_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == orders_before + 1
        customer, items = conn.execute("SELECT customer_id, items FROM orders WHERE id = ?",
                                       (int(fields["id"]),)).fetchone()
        after = dict(conn.execute("SELECT product_id, quantity FROM inventory"))
    assert customer == 1
    assert json.loads(items) == [{"product_id": products[0], "quantity": 2},
                                 {"product_id": products[1], "quantity": 3}]
    assert after[products[0]] == stock[products[0]] - 2 and after[products[1]] == stock[products[1]] - 3


def test_the_row_editor_and_json_text_trade_places(desktop, qtbot):
    page = _ready(desktop, qtbot)
    page.select_tool("create_order")
    editor = page.form.fields["items"]
    editor.add_button.click()
    qtbot.keyClicks(editor.cell(0, "product_id"), "JKT-BLU-M")
    qtbot.keyClicks(editor.cell(0, "quantity"), "4")
    editor.json_toggle.click()
    assert editor.json_edit.isVisibleTo(editor) and not editor.table.isVisibleTo(editor)
    assert json.loads(editor.json_edit.toPlainText()) == [{"product_id": "JKT-BLU-M", "quantity": 4}]
    editor.json_edit.setPlainText('[{"product_id": "A-1", "quantity": 1}, {"product_id": "B-2", "quantity": 7}]')
    editor.json_toggle.click()
    assert editor.table.isVisibleTo(editor) and editor.table.rowCount() == 2
    assert editor.cell(1, "product_id").text() == "B-2" and editor.cell(1, "quantity").text() == "7"
    assert page.form.raw_values()["items"] == [{"product_id": "A-1", "quantity": 1},
                                               {"product_id": "B-2", "quantity": 7}]

    editor.json_toggle.click()  # a shape rows cannot hold stays JSON, and says why
    editor.json_edit.setPlainText('[{"product_id": {"nested": true}, "quantity": 1}]')
    editor.json_toggle.click()
    assert editor.json_toggle.isChecked() and editor.json_edit.isVisibleTo(editor)
    assert "does not fit in rows" in editor.message.text()
    assert page.form.raw_values()["items"] == '[{"product_id": {"nested": true}, "quantity": 1}]'

    editor.set_value([{"product_id": "C-3", "quantity": 2}])
    editor.table.selectRow(0)
    editor.remove_button.click()
    assert editor.table.rowCount() == 0 and page.form.raw_values()["items"] == ""
    page.send_button.click()
    assert "items is required" in page.status_label.text()


def test_choosing_another_tool_clears_the_answer(desktop, qtbot):
    page = _ready(desktop, qtbot)
    page.select_tool("check_inventory")
    page.form.set_value("product_id", "JKT-BLU-M")
    page.send_button.click()
    _answer(page, qtbot)
    assert page.answer.table.model().rowCount() == 1 and page.answer.json_text()
    page.select_tool("get_order_status")
    assert page.answer.is_empty()
    assert page.answer.table.model().rowCount() == 0 and page.answer.json_text() == ""
    assert page.answer.summary.text() == "" and page.answer.cut_note.isHidden()
    assert not page.status_label.text().startswith("HTTP")

    page.select_tool("check_inventory")  # an answer that arrives after the switch is not shown either
    page.form.set_value("product_id", "JKT-BLU-M")
    page.send_button.click()
    page.select_tool("get_order_status")
    requests = desktop.window.pages["Requests"]
    qtbot.waitUntil(lambda: requests.model.rowCount() >= 2, timeout=10_000)
    qtbot.wait(300)
    assert page.answer.is_empty() and page.send_button.isEnabled()


def test_a_long_hint_is_shown_in_full_under_its_field(desktop, qtbot):
    window = desktop.window
    window.resize(760, 600)
    window.show()
    qtbot.waitExposed(window)
    page = _ready(desktop, qtbot)
    page.select_tool("find_customer_by_phone")
    spec = desktop.server.bridge.catalog.get("find_customer_by_phone").params["phone"]
    assert len(spec.description) > 60  # longer than any placeholder can show
    note = page.form.hints["phone"]
    qtbot.waitUntil(note.isVisible, timeout=2000)
    assert note.wordWrap() and note.text() == hint(spec)
    assert spec.description in note.text()
    assert note.height() >= note.heightForWidth(note.width())  # every wrapped line has room
    viewport = page.findChild(QScrollArea).viewport()
    assert note.mapTo(viewport, note.rect().topRight()).x() <= viewport.width()
    field = page.form.fields["phone"]
    assert isinstance(field, QLineEdit) and spec.description not in field.placeholderText()
    assert spec.description in field.toolTip()

    page.select_tool("check_inventory")
    product = page.form.fields["product_id"]
    assert product.placeholderText() == "e.g. JKT-BLU-M"
    assert page.form.hints["product_id"].text() == "Product id (SKU), e.g. JKT-BLU-M; at most 64 characters"
