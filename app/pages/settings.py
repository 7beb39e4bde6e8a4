"""Settings: address and port, HTTPS, limits, start at login, the logs folder."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.widgets.file_field import FileField
from app.widgets.tunnel_panel import TunnelPanel
from server.autostart import Autostart, launch_command
from server.config import Config, ConfigError
from server.config_edit import write_settings

HOSTS = {"127.0.0.1": "This PC only (127.0.0.1), reached through a tunnel",
         "0.0.0.0": "Every network of this PC (0.0.0.0), needs HTTPS"}


def _spin(low: int, high: int, suffix: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSuffix(suffix)
    return spin


class SettingsPage(QWidget):
    title = "Settings"
    icon_name = "settings"

    def __init__(self, controller: AppController, autostart: Autostart,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.autostart = autostart

        self.host = QComboBox()
        self.host.setEditable(True)
        for host, label in HOSTS.items():
            self.host.addItem(label, host)
        self.host.setToolTip("Where the server listens. Anything but this PC needs HTTPS.")
        self.port = _spin(1, 65535)
        self.public_url = QLineEdit()
        self.public_url.setPlaceholderText("https://voka.myshop.com")
        self.public_url.setToolTip("The address Voka uses to reach this PC (your tunnel or public name)")
        server_box = QGroupBox("Server")
        server_form = QFormLayout(server_box)
        server_form.addRow("Listen on", self.host)
        server_form.addRow("Port", self.port)
        server_form.addRow("Address for Voka", self.public_url)

        self.self_signed = QCheckBox("Generate and use a self-signed certificate")
        self.tls_cert = FileField("Certificate", placeholder="certificate.pem (your own certificate)")
        self.tls_key = FileField("Private key", placeholder="private-key.pem")
        tls_box = QGroupBox("HTTPS")
        tls_form = QFormLayout(tls_box)
        tls_form.addRow(self.self_signed)
        tls_form.addRow("Certificate", self.tls_cert)
        tls_form.addRow("Private key", self.tls_key)
        self.fingerprint = QLabel()
        self.fingerprint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fingerprint.setWordWrap(True)
        self.fingerprint.setToolTip("Compare this with what a client shows for the certificate (pinning)")
        tls_form.addRow("Fingerprint (SHA-256)", self.fingerprint)

        self.rate_requests = _spin(1, 1_000_000, " requests")
        self.rate_window = _spin(1, 86_400, " s")
        self.failed_auth = _spin(1, 10_000, " per minute")
        self.failed_auth.setToolTip("Wrong keys allowed from one address before it is blocked for a while")
        self.max_body = _spin(256, 64 * 1024 * 1024, " bytes")
        self.query_timeout = QDoubleSpinBox()
        self.query_timeout.setRange(0.1, 600)
        self.query_timeout.setSuffix(" s")
        self.max_rows = _spin(1, 1_000_000, " rows")
        limits_box = QGroupBox("Limits")
        limits_form = QFormLayout(limits_box)
        window = QHBoxLayout()
        window.addWidget(self.rate_requests)
        window.addWidget(QLabel("per key every"))
        window.addWidget(self.rate_window)
        limits_form.addRow("Rate limit", window)
        limits_form.addRow("Failed sign-ins", self.failed_auth)
        limits_form.addRow("Largest request", self.max_body)
        limits_form.addRow("Query time limit", self.query_timeout)
        limits_form.addRow("Rows per answer", self.max_rows)

        self.start_at_login = QCheckBox("Start Voka Bridge when I log in")
        self.start_at_login.setToolTip(autostart.where())
        self.start_at_login.setChecked(autostart.enabled())
        self.start_at_login.toggled.connect(self._autostart_toggled)
        logs = QPushButton("Open the logs folder")
        logs.clicked.connect(self.open_logs)
        app_box = QGroupBox("This app")
        app_layout = QVBoxLayout(app_box)
        app_layout.addWidget(self.start_at_login)
        app_layout.addWidget(logs)

        tunnel_box = QGroupBox("Tunnel (how Voka reaches this PC; applies at once)")
        self.tunnel = TunnelPanel(controller)
        QVBoxLayout(tunnel_box).addWidget(self.tunnel)

        self.save_button = QPushButton("Save and restart server")
        self.save_button.clicked.connect(self.save)
        self.message = QLabel()
        self.message.setWordWrap(True)
        content = QWidget()  # scrolls when the window is shorter than the settings
        layout = QVBoxLayout(content)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        for box in (server_box, tunnel_box, tls_box, limits_box, app_box):
            layout.addWidget(box)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.save_button)
        layout.addLayout(row)
        layout.addWidget(self.message)
        layout.addStretch(1)

        controller.serverStateChanged.connect(lambda state: state == "serving" and self.load())
        self.load()

    def load(self) -> None:
        config: Config = self.controller.server.bridge.config
        index = self.host.findData(config.server.host)
        if index >= 0:
            self.host.setCurrentIndex(index)
        else:
            self.host.setEditText(config.server.host)
        self.port.setValue(config.server.port or 3000)
        self.public_url.setText(config.server.public_url)
        self.self_signed.setChecked(config.server.tls_self_signed)
        self.tls_cert.setText(config.server.tls_cert)
        self.tls_key.setText(config.server.tls_key)
        certificate = self.controller.certificate
        self.fingerprint.setText(certificate.fingerprint if certificate is not None
                                 else "none: plain HTTP (on loopback, a tunnel provides HTTPS)")
        self.rate_requests.setValue(config.rate_limit.requests)
        self.rate_window.setValue(int(config.rate_limit.window_seconds))
        self.failed_auth.setValue(config.rate_limit.failed_auth_per_minute)
        self.max_body.setValue(config.limits.max_body_bytes)
        self.query_timeout.setValue(config.limits.query_timeout_seconds)
        self.max_rows.setValue(config.limits.max_rows)
        if self.controller.server.port_override is not None:
            self.port.setToolTip(f"This run was started with --port {self.controller.server.port_override}, "
                                 "which wins over this setting")

    def values(self) -> dict[str, dict[str, Any]]:
        text = self.host.currentText()
        host = self.host.currentData() if text in HOSTS.values() else text
        return {
            "server": {"host": (host or "127.0.0.1").strip(), "port": self.port.value(),
                       "public_url": self.public_url.text().strip() or None,
                       "tls_self_signed": self.self_signed.isChecked() or None,
                       "tls_cert": self.tls_cert.text().strip() or None,
                       "tls_key": self.tls_key.text().strip() or None},
            "rate_limit": {"requests": self.rate_requests.value(), "window_seconds": self.rate_window.value(),
                           "failed_auth_per_minute": self.failed_auth.value()},
            "limits": {"max_body_bytes": self.max_body.value(),
                       "query_timeout_seconds": self.query_timeout.value(),
                       "max_rows": self.max_rows.value()},
        }

    @Slot()
    def save(self) -> None:
        values = self.values()
        self.save_button.setEnabled(False)

        def saved(_config: Config) -> None:
            self.save_button.setEnabled(True)
            self.message.setText("Saved. Restarting the server…")
            self.controller.restart()

        def failed(exc: BaseException) -> None:
            self.save_button.setEnabled(True)
            self.message.setText(f"Not saved: {exc}" if isinstance(exc, ConfigError) else str(exc))

        self.controller.calls.blocking(write_settings, self.controller.paths.config_file, values,
                                       on_done=saved, on_error=failed)

    def _autostart_toggled(self, wanted: bool) -> None:
        def done(enabled: bool) -> None:
            self.start_at_login.blockSignals(True)
            self.start_at_login.setChecked(enabled)
            self.start_at_login.blockSignals(False)

        self.controller.set_autostart(self.autostart, wanted, launch_command(self.controller.home),
                                      on_done=done)

    @Slot()
    def open_logs(self) -> bool:
        folder = self.controller.paths.log_dir
        folder.mkdir(parents=True, exist_ok=True)
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))



