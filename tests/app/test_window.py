"""The main window: a notice floats over the end of the page list (never over a page's buttons) and closes
with its close button; without a tray, closing asks first."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QMessageBox, QSystemTrayIcon

from app.desktop import STOP_QUESTION
from server.notices import Notice

DOWN = Notice("Database unreachable", "Voka cannot read your data right now: <file moved>", critical=True)


def _where(widget, window) -> tuple[QPoint, int, int]:
    return widget.mapTo(window, QPoint(0, 0)), widget.width(), widget.height()


def test_a_notice_floats_over_the_pages_and_stays_closed_until_something_new(make_desktop, qtbot):
    desktop = make_desktop(start=False)
    window = desktop.window
    window.resize(1000, 700)
    window.show()
    qtbot.waitExposed(window)
    page = window.show_page("Keys")
    before = [_where(w, window) for w in (window.stack, page, page.create_button, page.table)]
    bar = window.notice_bar

    desktop.controller.notify(DOWN)
    assert bar.isVisible()
    assert bar.text() == "<b>Database unreachable</b>: Voka cannot read your data right now: &lt;file moved&gt;"
    assert [_where(w, window) for w in (window.stack, page, page.create_button, page.table)] == before
    over = window.nav.geometry()
    assert over.contains(bar.geometry())  # over the page list's empty end, not a page or the header
    assert not window.stack.geometry().intersects(bar.geometry())
    assert over.bottom() - bar.geometry().bottom() < 30
    last_item = window.nav.visualItemRect(window.nav.item(window.nav.count() - 1))
    assert window.nav.mapTo(window, last_item.bottomLeft()).y() < bar.geometry().top()  # no page hidden
    assert bar.height() >= bar.heightForWidth(bar.width())  # the whole text shows

    qtbot.mouseClick(bar.close_button, Qt.MouseButton.LeftButton)
    assert not bar.isVisible()
    assert [_where(w, window) for w in (window.stack, page, page.create_button, page.table)] == before

    desktop.controller.notify(DOWN)  # the same news again: it stays closed
    assert not bar.isVisible()
    desktop.controller.notify(Notice("Database back", "Your database answers again."))
    assert bar.isVisible() and "Database back" in bar.text()
    desktop.controller.notify(DOWN)  # something happened since: it is news again
    assert bar.isVisible() and "Database unreachable" in bar.text()

    window.resize(820, 560)  # it follows the window
    qtbot.waitUntil(lambda: window.nav.geometry().contains(bar.geometry()), timeout=2000)
    assert window.nav.geometry().bottom() - bar.geometry().bottom() < 30


@pytest.fixture
def no_tray(monkeypatch: pytest.MonkeyPatch) -> None:
    """A desktop without a system tray (some Linux desktops): the window is the whole app."""
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: False))


def _when_question_shows(desktop, act: Callable[[QMessageBox], None]) -> None:
    """Act on the real question box once it shows (it runs its own modal loop, so this is queued first)."""
    def poll() -> None:
        box = desktop.close_question
        if box is None or not box.isVisible():
            QTimer.singleShot(20, poll)
            return
        act(box)

    QTimer.singleShot(0, poll)


def _answer_close_question(desktop, qtbot, button_text: str) -> list[str]:
    """Click a button of the close question; the texts it showed."""
    seen: list[str] = []

    def click(box: QMessageBox) -> None:
        seen.append(box.text())
        [button] = [b for b in box.buttons() if b.text() == button_text]
        button.click()

    _when_question_shows(desktop, click)
    return seen


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_without_a_tray_closing_asks_and_keep_running_minimizes(no_tray, make_desktop, qtbot):
    app = make_desktop(tray=None)
    assert not app.tray.available
    port = app.server.bridge.config.server.port
    app.window.show()
    qtbot.waitExposed(app.window)
    seen = _answer_close_question(app, qtbot, "Keep running (minimize)")
    app.window.close()
    assert seen == [STOP_QUESTION]
    assert not app.quitting and app.server.state == "serving" and _port_open(port)
    assert app.window.isVisible() and app.window.isMinimized()
    app.shutdown()  # quitting: the window closes without a question (as the test's clean-up closes it)


def test_without_a_tray_closing_asks_and_stop_quits(no_tray, make_desktop, qtbot):
    app = make_desktop(tray=None)
    port = app.server.bridge.config.server.port
    app.window.show()
    qtbot.waitExposed(app.window)
    seen = _answer_close_question(app, qtbot, "Stop Voka Bridge")
    app.window.close()
    assert seen == [STOP_QUESTION]
    assert app.quitting and app.server.state == "stopped" and not _port_open(port)


def test_the_close_question_defaults_to_keep_running(no_tray, make_desktop, qtbot):
    """Escape (or Enter without thinking) never stops serving Voka."""
    app = make_desktop(tray=None, start=False)
    app.window.show()
    seen: list[bool] = []

    def escape(box: QMessageBox) -> None:
        seen.append(box.defaultButton() is box.escapeButton())
        assert isinstance(box, QMessageBox)
        qtbot.keyClick(box, Qt.Key.Key_Escape)

    _when_question_shows(app, escape)
    app.window.close()
    assert seen == [True]
    assert not app.quitting and app.window.isMinimized()
    app.shutdown()
