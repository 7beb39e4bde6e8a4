"""The managed tunnel, as one switch: which provider, its token and address, on/off, and what it is doing.

The same panel serves the wizard's "How Voka reaches this PC" step, the Connect page and Settings. It
only orchestrates: the tunnel itself (server/tunnel/) runs on the server thread, and its news arrives as
TunnelChanged events through the controller's `tunnelChanged` signal.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)

from app.controller import AppController
from server.connect import VOKA_PATH
from server.events import TunnelChanged


@dataclass(frozen=True)
class Choice:
    provider: str
    label: str
    explain: str
    token_label: str  # "" when no token is needed
    domain_label: str  # "" when there is no address to give


CHOICES = (
    Choice("ngrok", "ngrok: a fixed address (recommended)",
           "A free ngrok account gives you an authtoken and one free static domain (ngrok dashboard → "
           "Domains). Paste both here: Voka then reaches this PC at the same address after every restart, "
           "so you paste it into Voka only once.",
           "ngrok authtoken", "Static domain (optional)"),
    Choice("cloudflare-quick", "Cloudflare quick tunnel: for trying things out, no account",
           "Starts at once with no account, but its address changes every time it starts: you must then "
           "paste the new address into Voka again (the app tells you when it changed).",
           "", ""),
    Choice("cloudflare-named", "Cloudflare named tunnel: a fixed address on your own domain",
           "For a Cloudflare account with your own domain: create a tunnel in the Cloudflare dashboard "
           "(Zero Trust → Networks → Tunnels), point its public host name at the address shown below, and "
           "paste its token and host name here.",
           "Tunnel token", "Public host name"),
)
STATE_WORDS = {"starting": "Starting…", "up": "Running", "down": "Down, reconnecting by itself…",
               "failed": "Needs your attention", "stopped": "Off"}


class TunnelPanel(QWidget):
    publicUrlChanged = Signal(str)  # "" while there is no public address

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.provider = QComboBox()
        self.provider.setAccessibleName("Tunnel provider")
        for choice in CHOICES:
            self.provider.addItem(choice.label, choice.provider)
        self.explain = QLabel()
        self.explain.setWordWrap(True)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName("Tunnel token")
        self.save_token = QPushButton("Save token")
        self.save_token.setToolTip("Kept in this PC's keyring, never in a file")
        token_row = QHBoxLayout()
        token_row.setContentsMargins(0, 0, 0, 0)
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.save_token)
        self.token_row = QWidget()
        self.token_row.setLayout(token_row)
        self.domain = QLineEdit()
        self.domain.setAccessibleName("Tunnel address")
        self.switch = QPushButton("Start tunnel")
        self.switch.setAccessibleName("Tunnel switch")
        self.state = QLabel()
        self.state.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.addRow("Tunnel", self.provider)
        self.form.addRow(self.explain)
        self.form.addRow("Token", self.token_row)
        self.form.addRow("Address", self.domain)
        self.form.addRow(self.switch)
        self.form.addRow(self.state)
        self.form.addRow(self.progress)
        self.last = controller.tunnel_status()
        self._select(self.last.provider or controller.server.bridge.config.tunnel.provider or "ngrok")
        self.domain.setText(controller.server.bridge.config.tunnel.domain)
        self.provider.currentIndexChanged.connect(self._provider_changed)
        self.save_token.clicked.connect(self.store_token)
        self.switch.clicked.connect(self.toggle)
        controller.tunnelChanged.connect(self.show_state)
        self._provider_changed()
        self.show_state(self.last)

    # ---- what the owner picks ------------------------------------------------------------------
    def choice(self) -> Choice:
        return CHOICES[max(0, self.provider.currentIndex())]

    def _select(self, provider: str) -> None:
        for index, choice in enumerate(CHOICES):
            if choice.provider == provider:
                self.provider.setCurrentIndex(index)

    @Slot()
    def _provider_changed(self, *_args: object) -> None:
        choice = self.choice()
        self.explain.setText(choice.explain)
        self.token_row.setVisible(bool(choice.token_label))
        self.form.labelForField(self.token_row).setVisible(bool(choice.token_label))
        self.token.setPlaceholderText(choice.token_label)
        self.domain.setVisible(bool(choice.domain_label))
        self.form.labelForField(self.domain).setVisible(bool(choice.domain_label))
        self.domain.setPlaceholderText("your-shop.ngrok-free.app" if choice.provider == "ngrok"
                                       else "voka.your-shop.com")
        if choice.token_label:
            self.controller.calls.track(self.controller.server.tunnel.has_secret(choice.provider),
                                        on_done=self._token_known)

    def _token_known(self, stored: bool) -> None:
        if stored and not self.token.text():
            self.token.setPlaceholderText(f"{self.choice().token_label}: saved in the keyring ✔")

    @Slot()
    def store_token(self) -> None:
        secret = self.token.text().strip()
        if not secret:
            self.state.setText("✘ Paste the token first.")
            return
        self.save_token.setEnabled(False)

        def done(_result: object) -> None:
            self.save_token.setEnabled(True)
            self.token.clear()
            self._token_known(True)
            self.state.setText("✔ Token saved in this PC's keyring.")

        def failed(exc: BaseException) -> None:
            self.save_token.setEnabled(True)
            self.state.setText(f"✘ {exc}")

        self.controller.calls.track(self.controller.server.tunnel.set_secret(self.choice().provider, secret),
                                    on_done=done, on_error=failed)

    # ---- the switch ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.last.state in ("starting", "up", "down")

    @Slot()
    def toggle(self) -> None:
        tunnel = self.controller.server.tunnel
        self.switch.setEnabled(False)

        def failed(exc: BaseException) -> None:
            self.switch.setEnabled(True)
            self.state.setText(f"✘ {exc}")

        if self.running:
            self.controller.calls.track(tunnel.stop(), on_done=lambda _r: self.switch.setEnabled(True),
                                        on_error=failed)
            return
        if self.token.text().strip():  # typed but not saved: save it on the way
            self.store_token()
        choice = self.choice()
        domain = self.domain.text().strip() if choice.domain_label else ""
        self.controller.calls.track(tunnel.start(choice.provider, domain),
                                    on_done=lambda _r: self.switch.setEnabled(True), on_error=failed)

    @Slot(object)
    def show_state(self, event: TunnelChanged) -> None:
        before = self.public_url
        self.last = event
        self.switch.setText("Stop tunnel" if self.running else "Start tunnel")
        words = STATE_WORDS.get(event.state, event.state)
        text = f"<b>{words}</b>"
        if event.public_url and event.state == "up":
            text += f": Voka reaches this PC at <b>{event.public_url}</b>"
        if event.message:
            text += f"<br>{event.message}"
        if event.url_changed and event.state == "up":
            text += f"<br><b>The address changed</b>: paste the new URL into Voka again ({VOKA_PATH})."
        self.state.setText(text)
        self.progress.setVisible(event.progress is not None and event.state == "starting")
        if event.progress is not None:
            self.progress.setValue(int(event.progress * 100))
        if self.public_url != before:
            self.publicUrlChanged.emit(self.public_url)

    @property
    def public_url(self) -> str:
        return self.last.public_url if self.last.state == "up" else ""
