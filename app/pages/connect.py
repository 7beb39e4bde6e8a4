"""Connect to Voka: the three values for Voka's "Add MCP Server" form, the tunnel switch, a test of the
connection through the public address, and the setup wizard again."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from app.controller import AppController
from app.widgets.copy_field import CopyField
from app.widgets.dead_letters import DeadLetters
from app.widgets.tunnel_panel import TunnelPanel
from server.connect import VOKA_PATH
from server.connection_check import ProtocolCheck, check_connection
from server.keyadmin import UsableKey

WHERE_IN_VOKA = f"In Voka, open {VOKA_PATH}"
"""Where the owner pastes the values, in the one wording this page and the wizard share."""


class ConnectPage(QWidget):
    title = "Connect to Voka"
    icon_name = "connect"

    def __init__(self, controller: AppController, open_wizard: Callable[[], object],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.intro = QLabel(f"{WHERE_IN_VOKA} and paste these three values. The one URL answers both ways "
                            "Voka calls (its request format and MCP).")
        self.intro.setWordWrap(True)
        self.name = CopyField("Name")
        self.name.field.setReadOnly(False)
        self.name.set_text("Shop database")
        self.url = CopyField("URL")
        self.api_key = CopyField("API Key")
        self.api_key.field.setEchoMode(QLineEdit.EchoMode.Password)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("API Key", self.api_key)
        self.wizard_button = QPushButton("Set up the connection…")
        self.wizard_button.setToolTip("Choose the database, create a key and say how Voka reaches this PC")
        self.wizard_button.clicked.connect(lambda: open_wizard())
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(form)
        layout.addWidget(self.hint)
        self.test_button = QPushButton("Test the connection")
        self.test_button.setToolTip("Call this PC through the URL above with the key above, as Voka will")
        self.test_button.clicked.connect(self.test_connection)
        self.test_result = QLabel()
        self.test_result.setWordWrap(True)
        layout.addWidget(self.test_button)
        layout.addWidget(self.test_result)
        reach = QGroupBox("How Voka reaches this PC")
        self.tunnel = TunnelPanel(controller)
        QVBoxLayout(reach).addWidget(self.tunnel)
        layout.addWidget(reach)
        layout.addWidget(self.wizard_button)
        self.dead_letters = DeadLetters(controller)  # webhook events Voka never took (server/webhooks/)
        layout.addWidget(self.dead_letters, 1)
        controller.serverStateChanged.connect(self.refresh)
        controller.keysChanged.connect(self.refresh)
        controller.tunnelChanged.connect(self.refresh)
        self.refresh()

    @Slot()
    def refresh(self, *_args: object) -> None:
        controller = self.controller
        self.url.set_text(controller.voka_url)
        tunnel = controller.tunnel_status()
        if tunnel.state == "up" or controller.server.bridge.config.server.public_url:
            self.hint.clear()
        elif tunnel.state in ("starting", "down"):
            self.hint.setText("The tunnel is not up yet: the URL above only works on this PC for now.")
        else:
            self.hint.setText("This address only works on this PC. Voka calls from the internet: start a "
                              "tunnel below (or set up a public HTTPS address with “Set up the "
                              "connection…”).")
        controller.voka_key(self._show_key)

    def _show_key(self, key: UsableKey | None) -> None:
        self.api_key.set_text(key.secret if key else "")
        self.api_key.setToolTip(f"The key “{key.name}”" if key else "Create a key on the Keys page")

    @Slot()
    def test_connection(self) -> None:
        """Through the public URL (the whole path: provider, tunnel, this server) with the shown key."""
        url, key = self.url.text(), self.api_key.text()
        if not key:
            self.test_result.setText("✘ There is no API key to test with: create one on the Keys page.")
            return
        self.test_button.setEnabled(False)
        self.test_result.setText(f"Calling {url} …")

        def done(checks: list[ProtocolCheck]) -> None:
            self.test_button.setEnabled(True)
            self.test_result.setText("<br>".join(f"{'✔' if c.ok else '✘'} <b>{c.name}</b>: {c.detail}"
                                                 for c in checks))

        def failed(exc: BaseException) -> None:
            self.test_button.setEnabled(True)
            self.test_result.setText(f"✘ The test could not run: {exc}")

        self.controller.calls.run(check_connection(url, key), on_done=done, on_error=failed)
