"""Connect to Voka: the three values for Voka's "Add MCP Server" form, and the setup wizard again."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFormLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from app.controller import AppController
from app.widgets.copy_field import CopyField
from server.keyadmin import UsableKey


class ConnectPage(QWidget):
    title = "Connect to Voka"
    icon_name = "connect"

    def __init__(self, controller: AppController, open_wizard: Callable[[], object],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        intro = QLabel("In Voka AI: AI Assistants → Edit assistant → Agent tab → MCP Servers → Add MCP "
                       "Server, then paste these values.")
        intro.setWordWrap(True)
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
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.hint)
        layout.addWidget(self.wizard_button)
        layout.addStretch(1)
        controller.serverStateChanged.connect(self.refresh)
        controller.keysChanged.connect(self.refresh)
        self.refresh()

    @Slot()
    def refresh(self, *_args: object) -> None:
        controller = self.controller
        self.url.set_text(controller.voka_url)
        if not controller.server.bridge.config.server.public_url:
            self.hint.setText("This address only works on this PC. Voka calls from the internet: set up a "
                              "tunnel (or a public HTTPS address) with “Set up the connection…”.")
        else:
            self.hint.clear()
        controller.voka_key(self._show_key)

    def _show_key(self, key: UsableKey | None) -> None:
        self.api_key.set_text(key.secret if key else "")
        self.api_key.setToolTip(f"The key “{key.name}”" if key else "Create a key on the Keys page")
