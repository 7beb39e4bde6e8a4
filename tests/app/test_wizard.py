"""The Connect-to-Voka wizard: completes, leaves a working configuration, ends on Name/URL/API Key."""

from __future__ import annotations

import shutil
import sqlite3

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWizard

from server.cli import main as cli_main
from server.config import load_config
from tests.app.conftest import call

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


def test_wizard_completes_and_leaves_a_working_configuration(desktop, qtbot, tmp_path, capsys):
    assert desktop.server.first_run
    # The tunnel name below is made up: keep the app from probing it (no traffic to outside names).
    (desktop.server.paths.config_file).write_text("[server]\ncheck_public_url = false\n", encoding="utf-8")
    shop = tmp_path / "shop.sqlite3"
    shutil.copy(desktop.server.paths.demo_db, shop)
    with sqlite3.connect(shop) as conn:
        conn.execute("UPDATE inventory SET quantity = 77 WHERE product_id = 'JKT-BLU-M'")
    wizard = desktop.open_wizard()
    qtbot.waitUntil(wizard.isVisible, timeout=3000)

    db_page = wizard.database_page
    db_page.form.sqlite.setChecked(True)
    db_page.form.path.setText(str(shop))
    assert not db_page.isComplete()  # a new database must pass Test connection first
    db_page.test_button.click()
    qtbot.waitUntil(db_page.isComplete, timeout=10_000)
    assert "3 table(s)" in db_page.result.text()
    wizard.next()

    key_page = wizard.key_page
    assert wizard.currentPage() is key_page and not key_page.isComplete()
    key_page.create_button.click()
    qtbot.waitUntil(key_page.isComplete, timeout=10_000)
    wizard.next()

    reach = wizard.reach_page
    reach.own_tunnel.setChecked(True)
    reach.url.setText("http://not-https.example.com")
    wizard.next()
    assert wizard.currentPage() is reach and "https://" in reach.problem.text()
    reach.url.setText("https://corner-shop.trycloudflare.com/")
    wizard.next()

    finish = wizard.finish_page
    assert wizard.currentPage() is finish
    assert finish.url.text() == "https://corner-shop.trycloudflare.com"
    secret = finish.api_key.text()
    assert secret == key_page.secret and secret.startswith("vbk_")
    finish.api_key.copy()
    assert QGuiApplication.clipboard().text() == secret
    finish.name.copy()
    assert QGuiApplication.clipboard().text() == "Shop database"

    wizard.button(QWizard.WizardButton.FinishButton).click()
    qtbot.waitUntil(lambda: wizard.applied, timeout=10_000)
    qtbot.waitUntil(lambda: desktop.server.state == "serving"
                    and desktop.server.bridge.database_url.endswith("shop.sqlite3"), timeout=15_000)

    config = load_config(desktop.server.paths.config_file)
    assert config.database.url.endswith("shop.sqlite3")
    assert config.server.public_url == "https://corner-shop.trycloudflare.com"
    assert config.server.check_public_url is False
    assert config.server.host == "127.0.0.1"
    assert secret not in desktop.server.paths.config_file.read_text()
    status, body = call(desktop.controller.local_url, "/query", INVENTORY, key=secret)
    assert status == 200 and body["data"][0]["quantity"] == 77
    assert desktop.controller.voka_url == "https://corner-shop.trycloudflare.com"
    connect = desktop.window.show_page("Connect to Voka")
    connect.refresh()
    assert connect.url.text() == "https://corner-shop.trycloudflare.com"
    qtbot.waitUntil(lambda: connect.api_key.text() != "", timeout=5000)
    assert cli_main(["check", "--home", str(desktop.server.paths.config_dir)]) == 0
    assert "database: SQLite file" in capsys.readouterr().out


def test_cancelling_the_wizard_changes_nothing(desktop, qtbot):
    wizard = desktop.open_wizard()
    wizard.reject()
    assert not desktop.server.paths.config_file.exists()
    assert desktop.server.state == "serving"
