"""Overview: state, address, today's count, error rate, latency and live charts follow real traffic."""

from __future__ import annotations

from PySide6.QtGui import QImage

from tests.app.conftest import call

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


def test_overview_follows_real_traffic(desktop, qtbot):
    page = desktop.window.show_page("Overview")
    desktop.window.show()
    url, key = desktop.controller.local_url, desktop.server.first_key
    for _ in range(12):
        assert call(url, "/query", INVENTORY, key=key)[0] == 200
    call(url, "/query", INVENTORY, key="vbk_x_wrong")
    qtbot.waitUntil(lambda: page.today_value.text() == "13", timeout=3000)
    page.refresh()
    assert "Serving" in page.state_label.text()
    assert page.url_value.text() == url
    assert page.error_value.text() == "0.0 %"  # a refused key is not a server failure
    qtbot.waitUntil(lambda: page.latency_value.text().endswith(" ms"), timeout=3000)  # refreshed each second
    assert " / " in page.latency_value.text()
    assert page.database_value.text() == "reachable"
    assert page.rate_chart.peak > 0 and page.latency_chart.peak > 0
    page.resize(800, 600)
    image = QImage(page.rate_chart.size(), QImage.Format.Format_ARGB32)
    image.fill(0)
    page.rate_chart.render(image)
    assert len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}) > 3


def test_overview_when_stopped(desktop, qtbot):
    page = desktop.window.show_page("Overview")
    desktop.controller.stop()
    qtbot.waitUntil(lambda: "Stopped" in page.state_label.text(), timeout=10_000)
    assert page.url_value.text() == "—" and page.uptime_value.text() == "—"
