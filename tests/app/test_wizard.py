"""The Connect-to-Voka wizard: completes, leaves a working configuration, ends on Name/URL/API Key."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QWizard

from app.pages.connect import WHERE_IN_VOKA
from server import keyadmin
from server.cli import main as cli_main
from server.config import load_config
from tests.app.conftest import call
from tests.conftest import free_port

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
    assert wizard.currentPage() is key_page
    qtbot.waitUntil(key_page.isComplete, timeout=10_000)  # the key the first start made for Voka
    assert key_page.secret == desktop.server.first_key
    assert "“Voka AI”" in key_page.existing.text() and "can look things up" in key_page.existing.text()
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


def test_a_new_key_can_replace_the_one_the_first_start_made(desktop, qtbot):
    wizard = desktop.open_wizard()
    wizard.next()
    key_page = wizard.key_page
    qtbot.waitUntil(key_page.isComplete, timeout=10_000)
    assert key_page.create_button.text() == "Create a new key instead"
    assert key_page.name.text() == "Voka AI 2"  # "Voka AI" is taken by the first start's key
    key_page.create_button.click()
    qtbot.waitUntil(lambda: key_page.made_here, timeout=10_000)
    assert key_page.secret != desktop.server.first_key and key_page.existing.isHidden()
    # the running server takes a new key on its next look at the key store (at once, or a moment later)
    qtbot.waitUntil(lambda: desktop.server.bridge.authenticate(key_page.secret) is not None, timeout=5000)
    assert call(desktop.controller.local_url, "/query", INVENTORY, key=key_page.secret)[0] == 200
    made = {k.name: k.scopes for k in keyadmin.list_keys(desktop.server.paths)}
    assert made == {"Voka AI": ("query", "action"), "Voka AI 2": ("query", "action")}
    wizard.reject()


def all_shown(page, fields) -> bool:
    """Every field at least as tall as it asks to be (none squashed), and the test's message in full."""
    whole = page.result.height() >= page.result.heightForWidth(page.result.width())
    return whole and all(field.isVisible() and field.height() >= max(field.minimumSizeHint().height(),
                                                                     field.sizeHint().height())
                         for field in fields)


def test_the_wizard_sizes_to_its_content_and_never_squashes_the_postgresql_form(make_desktop, qtbot):
    desktop = make_desktop(start=False)
    wizard = desktop.open_wizard()
    qtbot.waitUntil(wizard.isVisible, timeout=3000)
    assert len(wizard.pageIds()) <= 4
    assert wizard.minimumSize() != wizard.maximumSize()  # resizable, no fixed size
    page = wizard.database_page
    form = page.form
    fields = [form.host, form.port, form.database, form.user, form.password, page.test_button]
    form.postgres.setChecked(True)
    form.port.setValue(free_port())  # nothing listens there: the test fails quickly and says why
    form.database.setText("shop")
    form.user.setText("owner")
    page.test_button.click()
    qtbot.waitUntil(lambda: page.result.text().startswith("✘"), timeout=20_000)
    qtbot.waitUntil(lambda: all_shown(page, fields), timeout=2000)
    page.result.setText("✘ " + "The database refused the connection; check the server name and port. " * 4)
    qtbot.waitUntil(lambda: all_shown(page, fields), timeout=2000)
    wizard.resize(300, 200)  # the owner drags it smaller: it stops where the content still fits
    qtbot.waitUntil(lambda: all_shown(page, fields), timeout=2000)
    assert wizard.width() > 300 and wizard.height() > 200
    wizard.reject()


def test_public_address_mode_browses_for_the_certificate_and_key(make_desktop, qtbot, tmp_path, monkeypatch):
    desktop = make_desktop(start=False)
    wizard = desktop.open_wizard()
    reach = wizard.reach_page
    reach.public.setChecked(True)
    assert not reach.cert.isHidden() and not reach.key.isHidden()
    port = reach.port
    assert reach.url.placeholderText() == f"https://voka.myshop.com:{port}"
    reach.own_tunnel.setChecked(True)
    assert reach.url.placeholderText() == "https://voka.myshop.com" and reach.cert.isHidden()
    reach.public.setChecked(True)

    cert, key = tmp_path / "shop-cert.pem", tmp_path / "shop-key.pem"
    asked: list[str] = []

    def pick(parent, caption, folder, file_filter):  # the owner's choice in the file dialog
        asked.append(caption)
        return (str(cert if caption == "Certificate" else key), file_filter.split(";;")[0])

    monkeypatch.setattr(QFileDialog, "getOpenFileName", pick)
    reach.cert.browse_button.click()
    reach.key.browse_button.click()
    assert asked == ["Certificate", "Private key"]
    assert reach.cert.text() == str(cert) and reach.key.text() == str(key)
    reach.url.setText(f"https://voka.myshop.com:{port}")
    chosen = reach.reach()
    assert (chosen.mode, chosen.tls_cert, chosen.tls_key) == ("public", str(cert), str(key))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: ("", ""))  # cancelled
    reach.cert.browse_button.click()
    assert reach.cert.text() == str(cert)
    wizard.reject()


def test_the_wizard_and_the_connect_page_say_the_same_about_where_to_paste(make_desktop):
    desktop = make_desktop(start=False)
    wizard = desktop.open_wizard()
    connect = desktop.window.show_page("Connect to Voka")
    assert WHERE_IN_VOKA == "In Voka, open AI Assistants → Edit assistant → Agent → MCP Servers → Add MCP Server"
    assert wizard.finish_page.subTitle().startswith(WHERE_IN_VOKA + " and paste these three values")
    assert connect.intro.text().startswith(WHERE_IN_VOKA + " and paste these three values")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "Agent tab" not in readme and readme.count(WHERE_IN_VOKA.removeprefix("In Voka, open ")) >= 2
    wizard.reject()
