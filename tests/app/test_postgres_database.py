"""A shop on PostgreSQL, chosen in the Database page: test connection in plain words, the password kept in
the keyring by the app and read back by the server."""

from __future__ import annotations

import asyncio

from server.config import load_config
from server.db.postgres import parse_url
from server.secretstore import SecretStore
from tests.app.conftest import call
from tests.postgres_support import PgServer, pg_server  # noqa: F401  (fixture)

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


def test_switch_to_postgres_with_the_password_in_the_keyring(make_desktop, pg_server: PgServer, qtbot):  # noqa: F811
    database = asyncio.run(pg_server.new_database())
    app = make_desktop()
    try:
        # The page reloads the form from the config when the server reports "serving": fill it in after
        # that, as a person would (on a slow machine the first report can arrive after the typing).
        qtbot.waitUntil(lambda: app.server.state == "serving", timeout=30_000)
        qtbot.wait(200)
        page = app.window.show_page("Database")
        form = page.form
        form.postgres.setChecked(True)
        form.host.setText(pg_server.host)
        form.port.setValue(pg_server.port)
        form.database.setText(database)
        form.user.setText(pg_server.role)
        form.database.setText(database + "_missing")
        form.password.setText(pg_server.password)
        page.test_button.click()
        qtbot.waitUntil(lambda: page.result.text().startswith(("✘", "✔")), timeout=20_000)
        assert page.result.text().startswith("✘") and pg_server.password not in page.result.text()
        form.database.setText(database)
        page.test_button.click()
        qtbot.waitUntil(lambda: page.result.text().startswith("✔"), timeout=20_000)
        assert "3 table(s)" in page.result.text()
        page.save_button.click()
        qtbot.waitUntil(lambda: app.server.state == "serving"
                        and app.server.bridge.database_url.startswith("postgresql:"), timeout=30_000)
        status, body = call(app.controller.local_url, "/query", INVENTORY, key=app.server.first_key)
        assert status == 200 and body["data"][0]["product_id"] == "JKT-BLU-M"
        url = load_config(app.server.paths.config_file).database.url
        assert pg_server.password not in app.server.paths.config_file.read_text()
        assert SecretStore().get(parse_url(url).keyring_account) == pg_server.password
    finally:
        app.shutdown()
        SecretStore().delete(parse_url(pg_server.url(database, password=False)).keyring_account)
        asyncio.run(pg_server.drop_database(database))
