"""The tunnel switch in the app: the Connect page and the wizard, with a stand-in ngrok at the process
boundary (a real local relay that forwards to the server's tunnel ingress, as ngrok's edge does)."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtGui import QGuiApplication

from server.connect import VOKA_PATH
from tests.server.tunnel.conftest import StandInNgrok, quick_timings, stand_in_ngrok  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("stand_in_ngrok")


def _connect_page(desktop: Any) -> Any:
    page = desktop.window.show_page("Connect to Voka")
    return page


def test_the_connect_page_switch_starts_the_tunnel_and_the_test_goes_through_it(desktop, qtbot) -> None:
    page = _connect_page(desktop)
    panel = page.tunnel
    panel._select("ngrok")
    assert panel.switch.text() == "Start tunnel"
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.public_url != "", timeout=20_000)
    public = panel.public_url
    assert public.startswith("http://127.0.0.1:")  # the stand-in edge
    qtbot.waitUntil(lambda: page.url.text() == public, timeout=5000)  # the one URL to paste is the public one
    assert panel.switch.text() == "Stop tunnel" and "Running" in panel.state.text()
    assert desktop.controller.voka_url == public
    assert public in desktop.tray.tooltip()
    desktop.tray.copy_url_action.trigger()
    assert QGuiApplication.clipboard().text() == public
    assert "ngrok" in desktop.server.paths.config_file.read_text()  # it comes back with the next start

    qtbot.waitUntil(lambda: bool(page.api_key.text()), timeout=10_000)
    page.test_button.click()
    qtbot.waitUntil(lambda: page.test_button.isEnabled() and "MCP" in page.test_result.text(), timeout=20_000)
    result = page.test_result.text()
    assert result.count("✔") == 3, result  # reachable, the Voka format and MCP, all through the tunnel

    StandInNgrok.instances[-1].lost.set()  # the provider drops the session
    qtbot.waitUntil(lambda: desktop.controller.tunnel_status().state == "up"
                    and desktop.controller.tunnel_status().public_url != public, timeout=20_000)
    assert desktop.controller.tunnel_status().url_changed
    qtbot.waitUntil(lambda: f"paste the new URL into Voka again ({VOKA_PATH})" in panel.state.text(), timeout=5000)
    qtbot.waitUntil(lambda: page.url.text() == desktop.controller.tunnel_status().public_url, timeout=5000)

    panel.switch.click()
    qtbot.waitUntil(lambda: desktop.controller.tunnel_status().state == "stopped", timeout=10_000)
    assert panel.switch.text() == "Start tunnel"
    assert page.url.text() == desktop.controller.local_url


def test_while_the_tunnel_is_down_the_status_is_amber(desktop, qtbot, monkeypatch) -> None:
    page = _connect_page(desktop)
    page.tunnel._select("ngrok")
    page.tunnel.switch.click()
    qtbot.waitUntil(lambda: desktop.controller.tunnel_status().state == "up", timeout=20_000)

    async def refuse(self, progress):  # type: ignore[no-untyped-def]
        raise ConnectionError("the stand-in edge is gone")

    monkeypatch.setattr(StandInNgrok, "open", refuse)
    StandInNgrok.instances[-1].lost.set()
    qtbot.waitUntil(lambda: desktop.controller.status.state == "degraded", timeout=20_000)
    assert "tunnel is down" in desktop.controller.status.reason


def test_the_wizard_moves_on_once_the_tunnel_has_an_address(desktop, qtbot) -> None:
    (desktop.server.paths.config_file).write_text("[server]\ncheck_public_url = false\n", encoding="utf-8")
    wizard = desktop.open_wizard()
    qtbot.waitUntil(wizard.isVisible, timeout=3000)
    reach = wizard.reach_page
    assert reach.tunnel.isChecked() and not reach.isComplete()
    reach.panel._select("ngrok")
    reach.panel.switch.click()
    qtbot.waitUntil(reach.isComplete, timeout=20_000)
    assert reach.reach().mode == "managed"
    assert reach.reach().checked_url() == reach.panel.public_url.rstrip("/")
