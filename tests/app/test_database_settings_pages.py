"""Database and Settings pages against the real server: test connection, switch database, schema, limits."""

from __future__ import annotations

import shutil
import sqlite3

from server.config import load_config
from tests.app.conftest import call
from tests.conftest import free_port

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


def test_test_connection_in_plain_words(desktop, qtbot, tmp_path):
    page = desktop.window.show_page("Database")
    assert page.form.demo.isChecked()
    page.test_button.click()
    qtbot.waitUntil(lambda: page.result.text().startswith(("✔", "✘")), timeout=10_000)
    assert page.result.text().startswith("✔ Connected to SQLite file") and "3 table(s)" in page.result.text()
    page.form.sqlite.setChecked(True)
    page.form.path.setText(str(tmp_path / "missing.sqlite3"))
    page.test_button.click()
    qtbot.waitUntil(lambda: page.result.text().startswith(("✘", "✔")), timeout=10_000)
    assert "does not exist" in page.result.text()
    page.form.postgres.setChecked(True)
    page.form.port.setValue(free_port())
    page.form.database.setText("shop")
    page.form.user.setText("owner")
    page.form.password.setText("s3cret-pw-123")
    page.test_button.click()
    qtbot.waitUntil(lambda: page.result.text().startswith(("✘", "✔")), timeout=20_000)
    assert page.result.text().startswith("✘") and "s3cret-pw-123" not in page.result.text()


def test_schema_browser_lists_tables_columns_and_rows(desktop, qtbot):
    page = desktop.window.show_page("Database")
    page.refresh_schema()
    qtbot.waitUntil(lambda: page.schema.topLevelItemCount() == 3, timeout=5000)
    tables = {page.schema.topLevelItem(i).text(0): page.schema.topLevelItem(i) for i in range(3)}
    assert set(tables) == {"customers", "inventory", "orders"}
    customers = tables["customers"]
    with sqlite3.connect(desktop.server.paths.demo_db) as conn:
        count = conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0]
    assert customers.text(4) == f"{count:,}"
    columns = {customers.child(i).text(0): customers.child(i) for i in range(customers.childCount())}
    assert columns["id"].text(2) == "primary key" and "phone" in columns


def test_switching_to_another_sqlite_file_restarts_on_it(desktop, qtbot, tmp_path):
    other = tmp_path / "other shop.sqlite3"
    shutil.copy(desktop.server.paths.demo_db, other)
    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE inventory SET name = 'From the other shop' WHERE product_id = 'JKT-BLU-M'")
    page = desktop.window.show_page("Database")
    page.form.sqlite.setChecked(True)
    page.form.path.setText(str(other))
    page.save_button.click()
    url, key = desktop.controller.local_url, desktop.server.first_key
    qtbot.waitUntil(lambda: desktop.server.state == "serving"
                    and desktop.server.bridge.database_url.endswith("other shop.sqlite3"), timeout=15_000)
    status, body = call(url, "/query", INVENTORY, key=key)
    assert status == 200 and body["data"][0]["name"] == "From the other shop"
    assert load_config(desktop.server.paths.config_file).database.url.endswith("other shop.sqlite3")


def test_settings_save_restarts_with_new_limits(desktop, qtbot):
    page = desktop.window.show_page("Settings")
    page.rate_requests.setValue(2)
    page.rate_window.setValue(60)
    page.save_button.click()
    qtbot.waitUntil(lambda: "Restarting" in page.message.text(), timeout=5000)
    qtbot.waitUntil(lambda: desktop.server.state == "serving"
                    and desktop.server.bridge.config.rate_limit.requests == 2, timeout=15_000)
    url, key = desktop.controller.local_url, desktop.server.first_key
    statuses = [call(url, "/query", INVENTORY, key=key)[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    config = load_config(desktop.server.paths.config_file)
    assert config.rate_limit.requests == 2
    assert "vbk_" not in desktop.server.paths.config_file.read_text()


def test_plain_http_on_every_network_is_refused_with_a_clear_reason(desktop, qtbot):
    page = desktop.window.show_page("Settings")
    page.host.setCurrentIndex(page.host.findData("0.0.0.0"))
    page.save_button.click()
    qtbot.waitUntil(lambda: desktop.tray.state == "failed", timeout=15_000)
    assert "Refusing to serve plain HTTP" in desktop.controller.status.reason
    page.host.setCurrentIndex(page.host.findData("127.0.0.1"))
    page.save_button.click()
    qtbot.waitUntil(lambda: desktop.tray.state == "serving", timeout=15_000)


def test_settings_show_the_served_certificates_fingerprint(make_desktop, app_home, qtbot):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from tests.app.conftest import write_config

    plain = make_desktop()
    page = plain.window.show_page("Settings")
    qtbot.waitUntil(lambda: page.fingerprint.text().startswith("none: plain HTTP"), timeout=5000)
    plain.shutdown()

    write_config(app_home, "[server]\ntls_self_signed = true\n")
    secure = make_desktop()
    assert secure.controller.local_url.startswith("https://")
    page = secure.window.show_page("Settings")
    served = secure.controller.certificate
    cert = x509.load_pem_x509_certificate(served.cert_path.read_bytes())
    expected = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    qtbot.waitUntil(lambda: page.fingerprint.text() == expected, timeout=5000)


def test_a_server_restart_keeps_what_the_owner_is_typing(desktop, qtbot):
    """The page shows config.toml again when the server comes back, but never over unsaved edits."""
    page = desktop.window.show_page("Database")
    assert page.form.demo.isChecked() and not page.edited()
    page.form.postgres.setChecked(True)
    page.form.database.setText("shop")
    page.form.user.setText("owner")
    with qtbot.waitSignal(desktop.controller.serverStateChanged, check_params_cb=lambda s: s == "serving",
                          timeout=15_000):
        desktop.controller.restart()
    assert page.form.postgres.isChecked() and page.form.database.text() == "shop" and page.edited()
    page.form.demo.setChecked(True)  # back to what config.toml says: the next report reloads the form
    assert not page.edited()


def test_settings_browse_for_the_certificate_and_key_files(make_desktop, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    desktop = make_desktop(start=False)
    page = desktop.window.show_page("Settings")
    assert page.public_url.placeholderText() == "https://voka.myshop.com"
    cert, key = tmp_path / "my shop.crt", tmp_path / "my shop.key"
    asked: list[tuple[str, str]] = []

    def pick(parent, caption, folder, file_filter):  # the owner's choice in the file dialog
        asked.append((caption, folder))
        return (str(cert if caption == "Certificate" else key), "")

    monkeypatch.setattr(QFileDialog, "getOpenFileName", pick)
    page.tls_cert.browse_button.click()
    page.tls_key.browse_button.click()
    assert [caption for caption, _ in asked] == ["Certificate", "Private key"]
    assert page.tls_cert.text() == str(cert) and page.tls_key.text() == str(key)
    page.tls_cert.browse_button.click()  # the dialog opens where the chosen file is
    assert asked[-1] == ("Certificate", str(cert))
    server = page.values()["server"]
    assert (server["tls_cert"], server["tls_key"]) == (str(cert), str(key))
