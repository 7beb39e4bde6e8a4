"""The dead letters of webhooks to Voka on the Connect page: listed, and Resend delivers them again."""

from __future__ import annotations

import time

from server.state import connect_state
from server.webhooks import outbox
from tests.app.conftest import write_config
from tests.conftest import free_port
from tests.server.webhook_receiver import Receiver


def bury_one(state_db, message_id: str) -> None:
    """A message that failed until its max age (as the delivery worker leaves it)."""
    conn = connect_state(state_db)
    try:
        now = time.time()
        outbox.hold(conn, "intent-1", [(message_id, "order.created", '{"event":"order.created","data":{"id":1}}')], now)
        outbox.bury(conn, "intent-1", now, "Voka answered HTTP 500")
    finally:
        conn.close()


def test_dead_letters_are_listed_and_resent_from_the_connect_page(make_desktop, app_home, qtbot):
    receiver = Receiver(free_port()).start()
    try:
        write_config(app_home, f'[webhooks]\nurl = "{receiver.url}"\nfirst_retry_seconds = 0.2\n')
        bury_one(app_home.state_db, "msg_deadletter1")
        desktop = make_desktop()
        page = desktop.window.show_page("Connect to Voka")
        box = page.dead_letters
        qtbot.waitUntil(lambda: len(box.rows) == 1, timeout=5000)
        assert box.table.rowCount() == 1 and box.table.item(0, 0).text() == "order.created"
        assert box.table.item(0, 3).text() == "Voka answered HTTP 500"
        assert not box.resend_button.isEnabled()
        box.table.selectRow(0)
        assert box.resend_button.isEnabled()
        box.resend_button.click()
        qtbot.waitUntil(lambda: box.rows == [] and not box.empty.isHidden() and box.table.isHidden(), timeout=5000)
        qtbot.waitUntil(lambda: [d.id for d in receiver.received()] == ["msg_deadletter1"], timeout=10_000)
        assert receiver.received()[0].body == b'{"event":"order.created","data":{"id":1}}'
    finally:
        receiver.stop()
