"""Connect to Voka AI: database, first API key, how Voka reaches this PC, and the three values to paste."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.controller import AppController
from app.icons import app_icon
from app.widgets.copy_field import CopyField
from app.widgets.database_form import DatabaseForm
from app.widgets.tunnel_panel import TunnelPanel
from server import keyadmin
from server.config import ConfigError
from server.connect import VOKA_PATH, Reach, VokaForm, apply_connection, voka_form
from server.dbconnect import ConnectionReport, DatabaseChoice, test_connection
from server.errors import BridgeError
from server.keys import ApiKey, KeyProblem
from server.secretstore import KeyringUnavailable


class DatabasePage(QWizardPage):
    def __init__(self, wizard: ConnectWizard) -> None:
        super().__init__()
        self.wizard_ = wizard
        self.setTitle("Your data")
        self.setSubTitle("Voka Bridge is already serving the demo shop, so you can try it. Choose the "
                         "database Voka should use.")
        self.form = DatabaseForm()
        self.form.changed.connect(self._changed)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.tested: DatabaseChoice | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(self.test_button)
        layout.addWidget(self.result)

    def _changed(self) -> None:
        self.tested = None
        self.result.clear()
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.form.demo.isChecked() or self.tested == self.form.choice()

    @Slot()
    def test(self) -> None:
        controller = self.wizard_.controller
        choice = self.form.choice()
        try:
            url = choice.url() or "sqlite:///" + controller.paths.demo_db.as_posix().lstrip("/")
        except ConfigError as exc:
            self.result.setText(str(exc))
            return
        self.result.setText("Connecting…")
        self.test_button.setEnabled(False)

        def done(report: ConnectionReport) -> None:
            self.test_button.setEnabled(True)
            self.result.setText(("✔ " if report.ok else "✘ ") + report.message)
            self.tested = choice if report.ok else None
            self.completeChanged.emit()

        def failed(exc: BaseException) -> None:
            self.test_button.setEnabled(True)
            self.result.setText(f"✘ {exc}")

        controller.calls.run(test_connection(url, password=self.form.typed_password(),
                                             settings=controller.server.bridge.config.database,
                                             base_dir=controller.paths.config_dir),
                             on_done=done, on_error=failed)


class KeyPage(QWizardPage):
    def __init__(self, wizard: ConnectWizard) -> None:
        super().__init__()
        self.wizard_ = wizard
        self.setTitle("An API key for Voka")
        self.setSubTitle("Voka sends this key with every call. It may run your tools (queries and actions) "
                         "but not raw SQL.")
        self.name = QLineEdit("Voka AI")
        self.create_button = QPushButton("Create key")
        self.create_button.clicked.connect(self.create)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.secret: str | None = None
        form = QFormLayout(self)
        form.addRow("Key name", self.name)
        form.addRow(self.create_button)
        form.addRow(self.result)

    def isComplete(self) -> bool:
        return self.secret is not None

    @Slot()
    def create(self) -> None:
        controller = self.wizard_.controller
        name = self.name.text().strip()
        self.create_button.setEnabled(False)

        def done(result: tuple[ApiKey, str]) -> None:
            record, self.secret = result
            kept = ("It is kept in your system's keyring." if record.secret_kept else
                    "This PC has no keyring to keep it in: the next screen shows it once, so copy it there.")
            self.result.setText(f"✔ Created the key “{record.name}”. {kept}")
            self.name.setEnabled(False)
            controller.keys_changed()
            self.completeChanged.emit()

        def failed(exc: BaseException) -> None:
            self.create_button.setEnabled(True)
            problem = str(exc) if isinstance(exc, KeyProblem | KeyringUnavailable) else f"Failed: {exc}"
            self.result.setText(f"✘ {problem}")

        controller.calls.blocking(lambda: keyadmin.create_key(controller.paths, name, ("query", "action")),
                                  on_done=done, on_error=failed)


class ReachPage(QWizardPage):
    def __init__(self, wizard: ConnectWizard) -> None:
        super().__init__()
        self.wizard_ = wizard
        self.setTitle("How Voka reaches this PC")
        self.setSubTitle("Voka's servers call this PC over HTTPS from the internet.")
        port = wizard.controller.server.bridge.config.server.port or 3000
        self.port = port
        self.tunnel = QRadioButton("Through a tunnel that this app runs for you (recommended: no router "
                                   "changes)")
        self.own_tunnel = QRadioButton("Through a tunnel I run myself (advanced)")
        self.public = QRadioButton("At this PC's own public address, with HTTPS")
        group = QButtonGroup(self)
        for button in (self.tunnel, self.own_tunnel, self.public):
            group.addButton(button)
        self.tunnel.setChecked(True)
        self.panel = TunnelPanel(wizard.controller)
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.url = QLineEdit(wizard.controller.server.bridge.config.server.public_url)
        self.url.setPlaceholderText(f"https://shop.example.com:{port}")
        self.cert = QLineEdit()
        self.cert.setPlaceholderText("certificate.pem (leave empty for a self-signed one)")
        self.key = QLineEdit()
        self.key.setPlaceholderText("private-key.pem")
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.public_box = QWidget()
        public_form = QFormLayout(self.public_box)
        public_form.setContentsMargins(0, 0, 0, 0)
        public_form.addRow(self.help)
        public_form.addRow("Address Voka uses", self.url)
        public_form.addRow("Certificate", self.cert)
        public_form.addRow("Private key", self.key)
        self.public_form = public_form
        layout = QVBoxLayout(self)
        layout.addWidget(self.tunnel)
        layout.addWidget(self.own_tunnel)
        layout.addWidget(self.public)
        layout.addWidget(self.panel)
        layout.addWidget(self.public_box)
        layout.addWidget(self.problem)
        layout.addStretch(1)
        group.buttonToggled.connect(self._mode_changed)
        self.url.textChanged.connect(self.completeChanged)
        self.panel.publicUrlChanged.connect(self.completeChanged)
        self._mode_changed()

    def _mode_changed(self, *_args: object) -> None:
        public = self.public.isChecked()
        self.panel.setVisible(self.tunnel.isChecked())
        self.public_box.setVisible(not self.tunnel.isChecked())
        for field in (self.cert, self.key):
            field.setVisible(public)
            self.public_form.labelForField(field).setVisible(public)
        self.help.setText(
            f"Forward port {self.port} on your router to this PC and enter https://NAME:{self.port} with the "
            "name or address the internet sees." if public else
            f"Point your tunnel at http://127.0.0.1:{self.port} and paste the https:// address it gives.")
        self.completeChanged.emit()

    def reach(self) -> Reach:
        if self.tunnel.isChecked():
            return Reach("managed", self.panel.public_url, self.port)
        if self.own_tunnel.isChecked():
            return Reach("tunnel", self.url.text(), self.port)
        return Reach("public", self.url.text(), self.port, self.cert.text(), self.key.text())

    def isComplete(self) -> bool:
        """Next once Voka has an address: the tunnel is up, or an address is typed."""
        return bool(self.panel.public_url if self.tunnel.isChecked() else self.url.text().strip())

    def validatePage(self) -> bool:
        try:
            self.reach().server_settings()
        except ConfigError as exc:
            self.problem.setText(f"✘ {exc}")
            return False
        self.problem.clear()
        return True


class FinishPage(QWizardPage):
    def __init__(self, wizard: ConnectWizard) -> None:
        super().__init__()
        self.wizard_ = wizard
        self.setTitle("Add Voka Bridge in Voka AI")
        self.setSubTitle(f"In Voka: {VOKA_PATH}. Paste these three values, save, and make a test call.")
        self.name = CopyField("Name")
        self.name.field.setReadOnly(False)
        self.name.set_text("Shop database")
        self.url = CopyField("URL")
        self.api_key = CopyField("API Key")
        self.api_key.field.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("API Key", self.api_key)
        self.note = QLabel("Finish saves these settings and restarts the server (calls in progress finish "
                           "first).")
        self.note.setWordWrap(True)
        form.addRow(self.note)

    def initializePage(self) -> None:
        form = self.wizard_.form()
        self.url.set_text(form.url)
        self.api_key.set_text(form.api_key)


class ConnectWizard(QWizard):
    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Connect to Voka AI")
        self.setWindowIcon(app_icon())
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.database_page = DatabasePage(self)
        self.key_page = KeyPage(self)
        self.reach_page = ReachPage(self)
        self.finish_page = FinishPage(self)
        for page in (self.database_page, self.key_page, self.reach_page, self.finish_page):
            self.addPage(page)
        self.applied = False
        self.error = ""

    def form(self) -> VokaForm:
        return voka_form(self.finish_page.name.text(), self.reach_page.reach(), self.key_page.secret or "")

    def accept(self) -> None:
        """Write the configuration off the GUI thread, then restart the server with it."""
        database = self.database_page.form.choice()
        password = self.database_page.form.typed_password()
        reach = self.reach_page.reach()
        self.button(QWizard.WizardButton.FinishButton).setEnabled(False)

        def done(_config: object) -> None:
            self.applied = True
            self.controller.restart()
            super(ConnectWizard, self).accept()

        def failed(exc: BaseException) -> None:
            self.button(QWizard.WizardButton.FinishButton).setEnabled(True)
            self.error = exc.detail if isinstance(exc, BridgeError) else str(exc)
            self.finish_page.note.setText(f"✘ Not saved: {self.error}")

        self.controller.calls.blocking(apply_connection, self.controller.paths.config_file, database,
                                       password, reach, on_done=done, on_error=failed)
