"""The app shell: window title, server on the given port, tray state, Stop/Start, single instance."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from PySide6.QtGui import QGuiApplication

from app.single_instance import SingleInstance, instance_name
from server import keyadmin
from tests.app.conftest import call

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_window_title_and_server_listening_on_the_given_port(desktop, qtbot):
    port = desktop.server.bridge.config.server.port
    assert desktop.window.windowTitle() == "Voka Bridge"
    assert desktop.controller.local_url == f"http://127.0.0.1:{port}"
    status, body = call(desktop.controller.local_url, "/health", method="GET")
    assert status == 200 and body["status"] == "healthy"
    qtbot.waitUntil(lambda: desktop.tray.state == "serving", timeout=5000)
    assert "Requests today" in desktop.tray.tooltip()
    assert desktop.controller.local_url in desktop.tray.tooltip()


def test_first_run_makes_a_key_for_voka_that_runs_tools_but_not_raw_sql(desktop):
    key = desktop.server.first_key
    assert key and key.startswith("vbk_")
    [record] = keyadmin.list_keys(desktop.server.paths)
    assert record.name == "Voka AI" and record.scopes == ("query", "action")
    status, body = call(desktop.controller.local_url, "/query", INVENTORY, key=key)
    assert status == 200 and body["data"][0]["product_id"] == "JKT-BLU-M"
    status, body = call(desktop.controller.local_url, "/query",
                        {"query": "SELECT * FROM customers LIMIT 5"}, key=key)
    assert status == 403 and body["code"] == "forbidden"


def test_mcp_api_key_is_honoured(make_desktop, monkeypatch):
    monkeypatch.setenv("MCP_API_KEY", "shop-secret-key-123")
    app = make_desktop()
    status, body = call(app.controller.local_url, "/query",
                        {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}},
                        key="shop-secret-key-123")
    assert status == 200, body
    assert body["data"][0]["product_id"] == "JKT-BLU-M"


def test_tray_stop_closes_the_port_and_start_reopens_it(desktop, qtbot):
    port = desktop.server.bridge.config.server.port
    assert port_open(port)
    qtbot.waitUntil(lambda: desktop.tray.state == "serving", timeout=5000)
    assert desktop.tray.toggle_action.text() == "Stop server"
    desktop.tray.toggle_action.trigger()
    qtbot.waitUntil(lambda: desktop.server.state == "stopped", timeout=15_000)
    assert not port_open(port)
    qtbot.waitUntil(lambda: desktop.tray.state == "stopped", timeout=3000)
    assert desktop.tray.toggle_action.text() == "Start server"
    desktop.tray.toggle_action.trigger()
    qtbot.waitUntil(lambda: desktop.server.state == "serving", timeout=15_000)
    assert port_open(port)
    status, _ = call(desktop.controller.local_url, "/query", INVENTORY, key=desktop.server.first_key)
    assert status == 200


def test_database_unreachable_turns_the_tray_red_and_back(desktop, qtbot):
    qtbot.waitUntil(lambda: desktop.tray.state == "serving", timeout=5000)
    db = desktop.server.paths.demo_db
    moved = db.with_name("moved-away.sqlite3")
    db.rename(moved)
    try:
        qtbot.waitUntil(lambda: desktop.tray.state == "failed", timeout=10_000)
        assert "Database unreachable" in desktop.controller.status.reason
        # the notice arrives with the next event batch, which may come just after the state change
        qtbot.waitUntil(lambda: "Database unreachable" in desktop.window.notice_bar.text(), timeout=5000)
    finally:
        moved.rename(db)
    qtbot.waitUntil(lambda: desktop.tray.state == "serving", timeout=10_000)


def test_port_in_use_is_a_failed_state_with_a_plain_message(make_desktop, qtbot):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        app = make_desktop(start=False, port=port)
        app.start()
        qtbot.waitUntil(lambda: app.tray.state == "failed", timeout=15_000)
    assert f"Port {port} is already in use" in app.controller.status.reason
    qtbot.waitUntil(lambda: "could not start" in app.window.notice_bar.text(), timeout=5000)


def test_copy_url_and_copy_key_from_the_tray_menu(desktop, qtbot):
    qtbot.waitUntil(lambda: desktop.tray.copy_url_action.isEnabled(), timeout=5000)
    desktop.tray.copy_url_action.trigger()
    assert QGuiApplication.clipboard().text() == desktop.controller.local_url
    desktop.tray.copy_key_action.trigger()
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == desktop.server.first_key, timeout=5000)


def test_start_at_login_menu_writes_and_removes_the_xdg_file(desktop, qtbot, tmp_path: Path):
    entry = tmp_path / "xdg" / "autostart" / "voka-bridge.desktop"
    assert not desktop.tray.autostart_action.isChecked()
    desktop.tray.autostart_action.trigger()
    qtbot.waitUntil(entry.exists, timeout=5000)
    assert "--home" in entry.read_text()
    assert desktop.tray.autostart_action.isChecked()
    desktop.tray.autostart_action.trigger()
    qtbot.waitUntil(lambda: not entry.exists(), timeout=5000)


def test_closing_the_window_keeps_serving_in_the_tray(desktop, qtbot):
    desktop.window.show()
    desktop.window.close()
    assert desktop.window.isHidden()
    assert desktop.server.state == "serving"
    assert "keeps running" in desktop.window.notice_bar.text().lower()


def test_second_instance_brings_the_first_forward(desktop, qtbot):
    name = instance_name(desktop.server.paths) + f"-{os.getpid()}"
    first = SingleInstance(name)
    assert first.claim()
    shown: list[bool] = []
    first.activated.connect(lambda: shown.append(True))
    second = SingleInstance(name)
    try:
        assert not second.claim()
        qtbot.waitUntil(lambda: shown == [True], timeout=5000)
    finally:
        first.release()
    third = SingleInstance(name)  # the first one has gone: the next launch is the first again
    try:
        assert third.claim()
    finally:
        third.release()


def test_quit_from_tray_stops_the_server(make_desktop, qtbot):
    app = make_desktop()
    port = app.server.bridge.config.server.port
    app.tray.quit_action.trigger()
    assert app.quitting
    assert not port_open(port)


def test_repeated_wrong_keys_raise_a_notification(desktop, qtbot):
    url = desktop.controller.local_url
    statuses = [call(url, "/query", {"query": "SELECT 1"}, key=f"vbk_bad_guess{i}")[0] for i in range(12)]
    assert statuses[0] == 401 and statuses[-1] == 429
    qtbot.waitUntil(lambda: "Repeated failed sign-ins" in desktop.window.notice_bar.text(), timeout=3000)
    assert "127.0.0.1" in desktop.window.notice_bar.text()
