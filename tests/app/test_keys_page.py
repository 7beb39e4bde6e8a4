"""Keys page: a key made here works from outside at once; copy, rotate with grace, revoke, last used."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from app.pages import keys as keys_page
from app.pages.keys import NOT_KEPT_NOTE
from server.keys import key_id_of
from server.state import connect_state
from tests.app.conftest import call

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


def accepted(qtbot, url: str, secret: str) -> None:
    """The running server takes a key made or rotated in the page within moments: the page asks it to
    re-read its keys on the server's own thread right after the change (no restart, no file watch)."""
    qtbot.waitUntil(lambda: call(url, "/query", INVENTORY, key=secret)[0] == 200, timeout=5000)


def _create(page, qtbot, name: str, scopes=("query",), tools=()) -> str:
    dialog = page.new_key()
    dialog.name.setText(name)
    for scope, box in dialog.scopes.items():
        box.setChecked(scope in scopes)
    for i in range(dialog.tools.count()):
        item = dialog.tools.item(i)
        if item.text() in tools:
            item.setCheckState(Qt.CheckState.Checked)
    dialog.accept()
    qtbot.waitUntil(lambda: page.secret_dialog is not None and page.secret_dialog.isVisible(), timeout=5000)
    secret = page.secret_dialog.secret_field.text()
    page.secret_dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == secret
    page.secret_dialog.accept()
    page.secret_dialog = None
    return secret


def test_key_created_in_the_keys_page_works_from_an_outside_client(desktop, qtbot):
    page = desktop.window.show_page("Keys")
    url = desktop.controller.local_url
    secret = _create(page, qtbot, "front desk", scopes=("query",))
    assert secret.startswith("vbk_")
    accepted(qtbot, url, secret)
    status, body = call(url, "/query", INVENTORY, key=secret)
    assert status == 200, body
    status, body = call(url, "/action", {"action": "create_customer",
                                         "params": {"name": "A", "phone": "+15550001111"}}, key=secret)
    assert status == 403  # query scope only
    qtbot.waitUntil(lambda: any(k.name == "front desk" for k in page.records), timeout=5000)
    page.select("front desk")
    assert page.selected().scopes == ("query",)
    qtbot.waitUntil(lambda: page.selected() is not None and page.selected().use_count >= 1, timeout=10_000)
    assert page.table.item(page.table.currentRow(), 7).text() != "never"


def test_tool_allowlist_copy_rotate_and_revoke(desktop, qtbot):
    page = desktop.window.show_page("Keys")
    url = desktop.controller.local_url
    secret = _create(page, qtbot, "limited", scopes=("query",), tools=("check_inventory",))
    accepted(qtbot, url, secret)
    assert call(url, "/query", {"name": "get_order_status", "params": {"order_id": 1}}, key=secret)[0] == 404
    qtbot.waitUntil(lambda: any(k.name == "limited" for k in page.records), timeout=5000)
    page.select("limited")

    page.copy_button.click()
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == secret, timeout=5000)

    page.ask_grace_hours = lambda: 2.0
    page.rotate_button.click()
    qtbot.waitUntil(lambda: page.secret_dialog is not None and page.secret_dialog.isVisible(), timeout=5000)
    new_secret = page.secret_dialog.secret_field.text()
    page.secret_dialog.accept()
    assert new_secret != secret
    accepted(qtbot, url, new_secret)
    assert call(url, "/query", INVENTORY, key=secret)[0] == 200  # still inside the grace period
    qtbot.waitUntil(lambda: page.selected() is not None and page.selected().status == "rotating", timeout=5000)

    page.confirm = lambda title, text: True
    page.revoke_button.click()
    qtbot.waitUntil(lambda: "Revoked" in page.message.text(), timeout=5000)
    qtbot.waitUntil(lambda: call(url, "/query", INVENTORY, key=new_secret)[0] == 401, timeout=5000)
    assert call(url, "/query", INVENTORY, key=secret)[0] == 401
    qtbot.waitUntil(lambda: "revoked" in desktop.window.notice_bar.text().lower(), timeout=5000)
    qtbot.waitUntil(lambda: page.selected() is not None and page.selected().status == "revoked", timeout=5000)
    assert not page.revoke_button.isEnabled()


def test_bad_key_name_is_explained_and_nothing_is_created(desktop, qtbot):
    page = desktop.window.show_page("Keys")
    qtbot.waitUntil(lambda: len(page.records) == 1, timeout=5000)  # the key the first start made
    dialog = page.new_key()
    dialog.name.setText("!!bad name")
    dialog.accept()
    qtbot.waitUntil(lambda: "key name is" in page.message.text(), timeout=5000)
    page.refresh()
    qtbot.wait(300)
    assert [k.name for k in page.records] == ["Voka AI"]


def test_rename_in_the_keys_page_shows_in_the_audit_of_outside_requests(desktop, qtbot):
    page = desktop.window.show_page("Keys")
    requests = desktop.window.show_page("Requests")
    url = desktop.controller.local_url
    secret = _create(page, qtbot, "front desk", scopes=("query",))
    qtbot.waitUntil(lambda: any(k.name == "front desk" for k in page.records), timeout=5000)
    page.select("front desk")
    assert page.rename_button.isEnabled()
    asked: list[str] = []
    page.ask_new_name = lambda current: asked.append(current) or "counter"
    page.rename_button.click()
    qtbot.waitUntil(lambda: "Renamed" in page.message.text(), timeout=5000)
    assert asked == ["front desk"]  # the prompt starts from the current name
    qtbot.waitUntil(lambda: any(k.name == "counter" for k in page.records), timeout=5000)
    assert not any(k.name == "front desk" for k in page.records)
    assert call(url, "/query", INVENTORY, key=secret)[0] == 200  # same secret, new name
    qtbot.waitUntil(lambda: any(e.key_name == "counter" for e in
                                (requests.model.event_at(r) for r in range(requests.model.rowCount()))),
                    timeout=5000)

    def audit_names() -> list[str]:
        conn = connect_state(desktop.controller.paths.state_db)
        try:
            return [row[0] for row in conn.execute("SELECT key_name FROM audit WHERE status = 200")]
        finally:
            conn.close()

    qtbot.waitUntil(lambda: audit_names() == ["counter"], timeout=5000)

    page.select("counter")
    page.ask_new_name = lambda current: "Voka AI"  # the first start's key's name
    page.rename_button.click()
    qtbot.waitUntil(lambda: "already exists" in page.message.text(), timeout=5000)
    assert {k.name for k in page.records} >= {"counter", "Voka AI"}


NOT_HERE = ("This key's secret was shown once when it was made and is not stored on this PC (no OS keyring). "
            "Rotate the key to get a new one.")


def _create_headless(desktop, qtbot, name: str) -> str:
    """`voka-bridge keys create` on a box with no keyring (the key is shown once and only its hash kept),
    then the running app told, as after any outside change, and the key answered with."""
    made = subprocess.run([sys.executable, "-m", "server.cli", "keys", "create", "--name", name, "--home",
                           str(desktop.controller.paths.config_dir)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    desktop.controller.keys_changed()
    qtbot.waitUntil(lambda: key_id_of(secret) in desktop.server.bridge.verifier.by_id, timeout=5000)
    assert call(desktop.controller.local_url, "/query", INVENTORY, key=secret)[0] == 200
    return secret


def _copy_refused(page, qtbot, name: str) -> str:
    """Copy a key whose secret this PC lacks: a plain message, and the clipboard left as it was."""
    qtbot.waitUntil(lambda: any(k.name == name for k in page.records), timeout=5000)
    page.select(name)
    QGuiApplication.clipboard().setText("left alone")
    page.message.clear()
    assert page.selected().name == name and page.copy_button.isEnabled()
    page.copy_button.click()

    def told() -> None:
        assert "Rotate the key" in page.message.text(), page.message.text()

    qtbot.waitUntil(told, timeout=5000)
    assert QGuiApplication.clipboard().text() == "left alone"
    return page.message.text()


def test_without_a_keyring_copy_says_plainly_that_the_secret_is_not_on_this_pc(no_keyring, make_desktop,
                                                                               qtbot):
    desktop = make_desktop()
    page = desktop.window.show_page("Keys")
    url = desktop.controller.local_url
    first = desktop.server.first_key
    assert first and call(url, "/query", INVENTORY, key=first)[0] == 200
    qtbot.waitUntil(lambda: any(k.name == "Voka AI" for k in page.records), timeout=5000)
    page.select("Voka AI")
    page.copy_button.click()  # the first key, made this run: the app still holds it until it quits
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == first, timeout=5000)

    dialog = page.new_key()
    dialog.name.setText("front desk")
    dialog.accept()
    qtbot.waitUntil(lambda: page.secret_dialog is not None and page.secret_dialog.isVisible(), timeout=5000)
    assert page.secret_dialog.note.text() == NOT_KEPT_NOTE
    made_here = page.secret_dialog.secret_field.text()
    page.secret_dialog.accept()
    accepted(qtbot, url, made_here)

    _create_headless(desktop, qtbot, "headless")  # the hash in state is all the server needs
    assert _copy_refused(page, qtbot, "headless") == NOT_HERE


def test_copy_says_so_when_the_keyring_lacks_the_secret(desktop, qtbot):
    page = desktop.window.show_page("Keys")
    _create_headless(desktop, qtbot, "headless")
    message = _copy_refused(page, qtbot, "headless")
    assert message.startswith("This key's secret was shown once when it was made and is not stored on this PC")
    assert "not in the OS keyring" in message and "Traceback" not in message


def test_the_key_the_first_start_made_is_told_and_permissions_read_plainly(desktop, qtbot):
    page = desktop.window.show_page("Keys")
    qtbot.waitUntil(lambda: len(page.records) == 1, timeout=5000)
    assert page.message.text().startswith("Voka Bridge made the key “Voka AI” when it first started")
    assert "can look things up and can change things" in page.message.text()
    assert "no raw SQL" in page.message.text()
    assert page.table.horizontalHeaderItem(2).text() == "What it can do"
    cell = page.table.item(0, 2)
    assert cell.text() == "can look things up; can change things"
    assert cell.toolTip() == "Scopes: query, action"  # the stored names, for an IT helper

    dialog = page.new_key()
    assert [box.text() for box in dialog.scopes.values()] == [
        "Can look things up", "Can change things", "Can run any read-only SQL (advanced)"]
    assert [box.isChecked() for box in dialog.scopes.values()] == [True, True, False]
    dialog.name.setText("it helper")
    dialog.scopes["action"].setChecked(False)
    dialog.scopes["sql"].setChecked(True)
    dialog.accept()
    qtbot.waitUntil(lambda: page.secret_dialog is not None and page.secret_dialog.isVisible(), timeout=5000)
    page.secret_dialog.accept()
    qtbot.waitUntil(lambda: any(k.name == "it helper" for k in page.records), timeout=5000)
    made = next(k for k in page.records if k.name == "it helper")
    assert made.scopes == ("query", "sql")  # the stored scope names stay as they were
    row = [k.name for k in page.records].index("it helper")
    assert page.table.item(row, 2).text() == "can look things up; can run any read-only SQL (advanced)"

    dialog = page.new_key()
    for box in dialog.scopes.values():
        box.setChecked(False)
    dialog.name.setText("nothing")
    dialog.accept()
    qtbot.waitUntil(lambda: "tick what it can do" in page.message.text(), timeout=5000)


def test_no_note_when_the_keys_were_there_before(make_desktop, app_home, qtbot):
    """A later start makes no key, so the page has nothing to tell about one."""
    app_home.ensure()
    made = subprocess.run([sys.executable, "-m", "server.cli", "keys", "create", "--name", "till", "--home",
                           str(app_home.config_dir)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    desktop = make_desktop()
    assert desktop.server.first_key is None
    page = desktop.window.show_page("Keys")
    qtbot.waitUntil(lambda: [k.name for k in page.records] == ["till"], timeout=5000)
    assert page.message.text() == ""


def test_an_older_read_of_the_keys_finishing_last_does_not_bring_back_the_old_list(desktop, qtbot, monkeypatch):
    """Refreshes read on worker threads side by side; the list shown is the latest asked for, whichever
    read finishes last (a key just made stays listed and selectable)."""
    page = desktop.window.show_page("Keys")
    qtbot.waitUntil(lambda: len(page.records) == 1, timeout=5000)
    real = keys_page.keyadmin.list_keys
    slow_started, release = threading.Event(), threading.Event()

    def held_back(paths):
        records = real(paths)  # read now, answered late: the list as it was before the new key
        slow_started.set()
        release.wait(10)
        return records

    monkeypatch.setattr(keys_page.keyadmin, "list_keys", held_back)
    page.refresh()
    assert slow_started.wait(5)
    monkeypatch.setattr(keys_page.keyadmin, "list_keys", real)
    _create_headless(desktop, qtbot, "headless")  # its keys_changed refresh reads the new list
    qtbot.waitUntil(lambda: any(k.name == "headless" for k in page.records), timeout=5000)
    page.select("headless")
    release.set()
    qtbot.waitUntil(lambda: not page.controller.calls.busy, timeout=5000)
    assert [k.name for k in page.records] == ["Voka AI", "headless"]
    assert page.table.rowCount() == 2 and page.selected().name == "headless"
