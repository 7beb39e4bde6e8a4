"""Test console: real requests through the embedded server's HTTP port, validation first, exact curl."""

from __future__ import annotations

import json
import sqlite3
import subprocess

from PySide6.QtGui import QGuiApplication


def _ready(desktop, qtbot):
    page = desktop.window.show_page("Test console")
    qtbot.waitUntil(lambda: bool(page.keys), timeout=5000)
    page.select_key(page.keys[0].key_id)
    return page


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
    answer = json.loads(page.response.toPlainText())
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
    page = _ready(desktop, qtbot)
    page.tabs.setCurrentIndex(1)
    page.sql_edit.setPlainText("SELECT name FROM customers WHERE id = $1")
    page.sql_args.setText("[1]")
    page.send_button.click()
    qtbot.waitUntil(lambda: page.status_label.text().startswith("HTTP"), timeout=10_000)
    assert page.status_label.text().startswith("HTTP 200")
    assert json.loads(page.response.toPlainText())["count"] == 1
    page.sql_edit.setPlainText("DELETE FROM customers")
    page.sql_args.clear()
    page.send_button.click()
    qtbot.waitUntil(lambda: "HTTP 400" in page.status_label.text(), timeout=10_000)
    assert json.loads(page.response.toPlainText())["code"] == "read_only"
    page.sql_args.setText("{not json")
    page.send_button.click()
    assert "not valid JSON" in page.status_label.text()
