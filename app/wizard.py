"""Connect to Voka AI: database, first API key, how Voka reaches this PC, and the three values to paste."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QTimer, Slot
from PySide6.QtGui import QResizeEvent
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
from app.pages.connect import WHERE_IN_VOKA
from app.pages.keys import scope_words
from app.widgets.copy_field import CopyField
from app.widgets.database_form import DatabaseForm
from app.widgets.file_field import FileField
from app.widgets.tunnel_panel import TunnelPanel
from server import keyadmin
from server.config import ConfigError
from server.connect import Reach, VokaForm, apply_connection, voka_form
from server.dbconnect import ConnectionReport, DatabaseChoice, test_connection
from server.errors import BridgeError
from server.keyadmin import UsableKey
from server.keys import ApiKey, KeyProblem
from server.secretstore import KeyringUnavailable

EXAMPLE_ADDRESS = "https://voka.myshop.com"
VOKA_SCOPES = ("query", "action")


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
        self.setSubTitle(f"Voka sends this key with every call. It {scope_words(VOKA_SCOPES)} through your "
                         "tools, and nothing else.")
        self.existing = QLabel()
        self.existing.setWordWrap(True)
        self.existing.setVisible(False)
        self.name = QLineEdit("Voka AI")
        self.create_button = QPushButton("Create key")
        self.create_button.clicked.connect(self.create)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.secret: str | None = None
        self.made_here = False
        form = QFormLayout(self)
        form.addRow(self.existing)
        form.addRow("Key name", self.name)
        form.addRow(self.create_button)
        form.addRow(self.result)

    def initializePage(self) -> None:
        """Offer the key this PC already has for Voka (the first start made one), so the owner does not
        end up with two; creating a new one stays a click away."""
        if not self.made_here:
            self.wizard_.controller.voka_key(self._offer)

    def _offer(self, key: UsableKey | None) -> None:
        if key is None or self.made_here or not set(VOKA_SCOPES) <= key.scopes:
            return
        self.secret = key.secret
        self.existing.setText(f"✔ Voka will use your key “{key.name}”: it {scope_words(key.scopes)}. "
                              "To give Voka a new key instead, name it and create it.")
        self.existing.setVisible(True)
        if self.name.text() == key.name:
            self.name.setText(f"{key.name} 2")
        self.create_button.setText("Create a new key instead")
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.secret is not None

    @Slot()
    def create(self) -> None:
        controller = self.wizard_.controller
        name = self.name.text().strip()
        self.create_button.setEnabled(False)

        def done(result: tuple[ApiKey, str]) -> None:
            record, self.secret = result
            self.made_here = True
            kept = ("It is kept in your system's keyring." if record.secret_kept else
                    "This PC has no keyring to keep it in: the next screen shows it once, so copy it there.")
            self.result.setText(f"✔ Created the key “{record.name}”. {kept}")
            self.existing.setVisible(False)
            self.name.setEnabled(False)
            controller.keys_changed()
            self.completeChanged.emit()

        def failed(exc: BaseException) -> None:
            self.create_button.setEnabled(True)
            problem = str(exc) if isinstance(exc, KeyProblem | KeyringUnavailable) else f"Failed: {exc}"
            self.result.setText(f"✘ {problem}")

        controller.calls.blocking(lambda: keyadmin.create_key(controller.paths, name, VOKA_SCOPES),
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
        self.cert = FileField("Certificate", placeholder="Leave empty to use a self-signed certificate")
        self.key = FileField("Private key", placeholder="private-key.pem")
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
        self.url.setPlaceholderText(f"{EXAMPLE_ADDRESS}:{self.port}" if public else EXAMPLE_ADDRESS)
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
        self.setSubTitle(f"{WHERE_IN_VOKA} and paste these three values, save, and make a test call.")
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
        self._fit_pending = False
        self.currentIdChanged.connect(self._fit_later)

    # ---- size: the shown page's content decides it ------------------------------------------------
    def event(self, event: QEvent) -> bool:
        """A page's content grew or shrank (a PostgreSQL form, a long test result): fit to it."""
        if event.type() == QEvent.Type.LayoutRequest:
            self._fit_later()
        return super().event(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_later()

    def _fit_later(self, *_args: object) -> None:
        if not self._fit_pending:
            self._fit_pending = True
            QTimer.singleShot(0, self, self.fit_to_page)  # dropped if the wizard is gone by then

    def fit_to_page(self) -> None:
        """Keep the window at least as large as the shown page needs, so no field is ever squashed.

        QWizard works out its minimum size when it switches pages, not when the page's content changes,
        and word-wrapped text needs more height the narrower the window is. Its own layout (around the
        header, page and buttons) knows what the content needs now: apply that as the minimum."""
        self._fit_pending = False
        page = self.currentPage()
        frame = next((child for child in self.children() if isinstance(child, QWidget)
                      and child.layout() is not None and page is not None and child.isAncestorOf(page)), None)
        if frame is None or not self.isVisible():
            return
        layout = frame.layout()
        layout.activate()
        minimum = layout.totalMinimumSize()
        if layout.hasHeightForWidth():
            minimum.setHeight(max(minimum.height(), layout.totalHeightForWidth(self.width())))
        if minimum != self.minimumSize():
            self.setMinimumSize(minimum)  # also grows the window when it is smaller

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
