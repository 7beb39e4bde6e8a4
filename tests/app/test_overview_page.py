"""Overview: state, address, today's count, failed and refused calls, latency, live charts and the refusal
notice follow real traffic through the real server."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QColor, QImage

from server import keyadmin
from tests.app.conftest import call, write_config

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}
REFUSED_AMBER = QColor("#b7791f")


def voka_key(app: Any, qtbot: Any, scopes: tuple[str, ...] = ("query", "action")) -> str:
    """A key of its own for the test (the first-run key may exist too), once the running server takes it."""
    _, secret = keyadmin.create_key(app.server.paths, "Voka phone", scopes)
    app.controller.keys_changed()
    qtbot.waitUntil(lambda: app.server.bridge.authenticate(secret) is not None, timeout=5000)
    return secret


def shown_overview(app: Any, qtbot: Any, requests: int) -> Any:
    page = app.window.show_page("Overview")
    app.window.show()
    qtbot.waitUntil(lambda: page.today_value.text() == f"{requests:,}", timeout=5000)
    page.refresh()
    return page


def amber_pixels(chart: Any) -> int:
    """Pixels of the refused line's colour in the plot, above its zero line and below the header (whose
    "refused" figure is amber too)."""
    image = QImage(chart.size(), QImage.Format.Format_ARGB32)
    image.fill(0)
    chart.render(image)
    amber = (REFUSED_AMBER.red(), REFUSED_AMBER.green(), REFUSED_AMBER.blue())
    count = 0
    for x in range(image.width()):
        for y in range(chart.fontMetrics().height() + 8, image.height() - 10, 2):
            pixel = image.pixelColor(x, y)
            rgb = (pixel.red(), pixel.green(), pixel.blue())
            count += pixel.alpha() > 200 and all(abs(a - b) < 40 for a, b in zip(rgb, amber, strict=True))
    return count


def test_overview_follows_real_traffic(desktop, qtbot):
    url, key = desktop.controller.local_url, voka_key(desktop, qtbot)
    for _ in range(12):
        assert call(url, "/query", INVENTORY, key=key)[0] == 200
    call(url, "/query", INVENTORY, key="vbk_x_wrong")
    page = shown_overview(desktop, qtbot, 13)
    assert "Serving" in page.state_label.text()
    assert page.url_value.text() == url
    assert page.failed_value.text() == "0 of 13 (0.0 %)"  # a refused key is not a server failure...
    assert page.refused_value.text() == "1 of 13 (7.7 %)"  # ...but it is counted and shown
    assert page.notice.isVisible() and page.notice_title.text() == "<b>Someone is using a wrong key</b>"
    qtbot.waitUntil(lambda: page.latency_value.text().endswith(" ms"), timeout=3000)  # refreshed each second
    assert " / " in page.latency_value.text()
    assert page.database_value.text() == "reachable"
    assert page.rate_chart.peak > 0 and page.latency_chart.peak > 0
    page.resize(800, 600)
    image = QImage(page.rate_chart.size(), QImage.Format.Format_ARGB32)
    image.fill(0)
    page.rate_chart.render(image)
    assert len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}) > 3


def test_calls_over_the_rate_limit_show_as_refused_naming_the_key_with_the_fix(make_desktop, app_home, qtbot):
    write_config(app_home, "[rate_limit]\nrequests = 5\nwindow_seconds = 60\n")
    app = make_desktop()
    url, key = app.controller.local_url, voka_key(app, qtbot)
    statuses = [call(url, "/query", INVENTORY, key=key)[0] for _ in range(20)]
    assert statuses == [200] * 5 + [429] * 15
    page = shown_overview(app, qtbot, 20)
    assert page.failed_value.text() == "0 of 20 (0.0 %)"
    assert page.refused_value.text() == "15 of 20 (75.0 %)"
    assert "#b7791f" in page.refused_value.styleSheet()  # the refused figure stands out
    assert page.notice.isVisible()
    assert page.notice_title.text() == "<b>Voka phone is over its limit of 5 per minute</b>"
    assert "15 calls were turned away" in page.notice_text.text()
    assert page.fix_button.isVisible() and page.fix_button.text() == "Raise the limit in Settings"
    # the server and database are fine, but Voka is mostly not answered: the state says so, not "Serving"
    turned_away = "Most calls are turned away (15 of the last 20): Voka phone is over its limit of 5 per minute."
    qtbot.waitUntil(lambda: app.controller.status.reason == turned_away, timeout=5000)
    page.refresh()
    assert "Degraded" in page.state_label.text() and page.reason_label.text() == turned_away
    assert "Degraded" in app.window.state_text.text() and turned_away in app.window.state_text.text()

    rates, refused = (line.values for line in page.rate_chart.lines)
    assert [line.label for line in page.rate_chart.lines] == ["all", "refused"]
    assert abs(sum(refused) * 3 - 15) < 1e-9 and abs(sum(rates) * 3 - 20) < 1e-9  # 3-second slots
    assert "refused: now" in page.rate_chart.toolTip()
    page.resize(900, 700)
    assert amber_pixels(page.rate_chart) > 5  # the refused line is drawn, in its own colour

    page.fix_button.click()
    settings = app.window.pages["Settings"]
    assert app.window.stack.currentWidget() is settings
    assert settings.rate_requests.value() == 5
    qtbot.waitUntil(settings.rate_requests.hasFocus, timeout=2000)  # the setting that fixes it, ready to type


def test_a_wrong_secret_names_the_key_and_opens_it(desktop, qtbot):
    url, key = desktop.controller.local_url, voka_key(desktop, qtbot)
    wrong = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    for _ in range(2):
        assert call(url, "/query", INVENTORY, key=wrong)[0] == 401
    page = shown_overview(desktop, qtbot, 2)
    assert page.refused_value.text() == "2 of 2 (100.0 %)"
    assert page.notice_title.text() == "<b>Someone is using a wrong key for “Voka phone”</b>"
    assert "copy the key again" in page.notice_text.text()
    assert page.fix_button.text() == "Open the key “Voka phone”"
    keys = desktop.window.pages["Keys"]
    qtbot.waitUntil(lambda: any(r.name == "Voka phone" for r in keys.records), timeout=5000)
    page.fix_button.click()
    assert desktop.window.stack.currentWidget() is keys
    assert keys.selected() is not None and keys.selected().name == "Voka phone"


def test_a_key_that_may_not_do_something_and_calls_without_a_key(desktop, qtbot):
    url, key = desktop.controller.local_url, voka_key(desktop, qtbot, ("query",))
    for _ in range(2):
        assert call(url, "/query", {"query": "SELECT 1"}, key=key)[0] == 403
    assert call(url, "/query", INVENTORY)[0] == 401
    assert call(url, "/query", INVENTORY, key=key)[0] == 200
    page = shown_overview(desktop, qtbot, 4)
    assert page.refused_value.text() == "3 of 4 (75.0 %)"
    assert page.notice_title.text() == "<b>Voka phone is not allowed to do this</b>"
    assert "It asked for raw SQL" in page.notice_text.text()
    assert page.notice_others.text() == "Also: Someone is calling without a key (1)"
    assert page.fix_button.text() == "Open the key “Voka phone”"


def test_no_notice_while_every_call_is_served(desktop, qtbot):
    url, key = desktop.controller.local_url, voka_key(desktop, qtbot)
    assert call(url, "/query", INVENTORY, key=key)[0] == 200
    page = shown_overview(desktop, qtbot, 1)
    assert page.refused_value.text() == "0 of 1 (0.0 %)" and page.refused_value.styleSheet() == ""
    assert not page.notice.isVisible() and page.explanation is None
    assert page.rate_chart.lines[1].peak == 0
    page.resize(900, 700)
    assert page.rate_chart.lines[0].peak > 0 and amber_pixels(page.rate_chart) == 0


def test_overview_when_stopped(desktop, qtbot):
    page = desktop.window.show_page("Overview")
    desktop.controller.stop()
    qtbot.waitUntil(lambda: "Stopped" in page.state_label.text(), timeout=10_000)
    assert page.url_value.text() == "—" and page.uptime_value.text() == "—"
    assert page.failed_value.text() == "no requests" and page.refused_value.text() == "no requests"
