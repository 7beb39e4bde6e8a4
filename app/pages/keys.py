"""Keys: create (the secret shown once, retrievable later from the keyring if there is one), rotate,
revoke, last used."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from server import keyadmin
from server.keys import SCOPES, ApiKey, KeyProblem, hash_key
from server.notices import NoticeRules

COLUMNS = ("Name", "ID", "What it can do", "Tools", "Rate limit", "Status", "Created", "Last used", "Uses")
SCOPE_WORDS = {"query": "can look things up", "action": "can change things",
               "sql": "can run any read-only SQL (advanced)"}
"""What each stored scope (query, action, sql; names unchanged) means for the shop."""
SCOPE_HELP = {"query": "Your query tools: stock, prices, customers, order status…",
              "action": "Your action tools, which write to your data: new customers, orders…",
              "sql": "Reads any table, not only what your tools show. Only for an IT helper's own key."}


def scope_words(scopes: Collection[str]) -> str:
    """A key's scopes as one plain phrase, e.g. "can look things up and can change things"."""
    words = [SCOPE_WORDS[scope] for scope in SCOPES if scope in scopes]
    if not words:
        return "can do nothing"
    return ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]


NO_KEYS = "No keys yet. Create one for Voka with “New key…”."


def _when(value: dt.datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "never"


class NewKeyDialog(QDialog):
    def __init__(self, tools: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New API key")
        self.name = QLineEdit("voka")
        self.name.setToolTip("A name you recognise, e.g. the assistant or person using it")
        self.scopes = {scope: QCheckBox(SCOPE_WORDS[scope][0].upper() + SCOPE_WORDS[scope][1:])
                       for scope in SCOPES}
        for scope, box in self.scopes.items():
            box.setToolTip(f"{SCOPE_HELP[scope]} (scope “{scope}”)")
        self.scopes["query"].setChecked(True)
        self.scopes["action"].setChecked(True)
        self.tools = QListWidget()
        self.tools.setToolTip("Leave all unticked to allow every tool; tick some to allow only those")
        for name in tools:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.tools.addItem(item)
        self.tools.setMaximumHeight(120)
        self.rate = QSpinBox()
        self.rate.setRange(0, 1_000_000)
        self.rate.setSpecialValueText("server default")
        self.rate.setToolTip("Requests this key may make per rate-limit window (0 = the server's default)")
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        scope_box = QVBoxLayout()
        for box in self.scopes.values():
            scope_box.addWidget(box)
        form.addRow("This key", scope_box)
        form.addRow("Only these tools", self.tools)
        form.addRow("Rate limit", self.rate)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #d33a2c")
        self.problem.setWordWrap(True)
        form.addRow(self.problem)
        buttons = QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        self.buttons = QDialogButtonBox(buttons)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create key")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def chosen_scopes(self) -> tuple[str, ...]:
        return tuple(scope for scope, box in self.scopes.items() if box.isChecked())

    def chosen_tools(self) -> tuple[str, ...] | None:
        ticked = [self.tools.item(i).text() for i in range(self.tools.count())
                  if self.tools.item(i).checkState() == Qt.CheckState.Checked]
        return tuple(ticked) or None


KEPT_NOTE = ("Copy this key now and paste it into Voka's “API Key” field. It is kept in your system's "
             "keyring; 'Copy key' on the Keys page copies it again.")
NOT_KEPT_NOTE = ("Copy this key now and paste it into Voka's “API Key” field. This PC has no usable OS "
                 "keyring, so the key is not stored: once Voka Bridge quits it cannot be shown again "
                 "(rotating the key makes a new one).")


class SecretDialog(QDialog):
    """Shows a new key once, with Copy; where the keyring kept it, 'Copy key' retrieves it later."""

    def __init__(self, title: str, secret: str, parent: QWidget | None = None, *, kept: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.secret_field = QLineEdit(secret)
        self.secret_field.setReadOnly(True)
        self.secret_field.setMinimumWidth(460)
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(secret))
        row = QHBoxLayout()
        row.addWidget(self.secret_field, 1)
        row.addWidget(copy)
        self.copy_button = copy
        layout = QVBoxLayout(self)
        self.note = QLabel(KEPT_NOTE if kept else NOT_KEPT_NOTE)
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        layout.addLayout(row)
        done = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        done.rejected.connect(self.accept)
        layout.addWidget(done)


class KeysPage(QWidget):
    title = "Keys"
    icon_name = "keys"

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.records: list[ApiKey] = []
        self.dialog: NewKeyDialog | None = None
        self.secret_dialog: SecretDialog | None = None

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)

        self.create_button = QPushButton("New key…")
        self.create_button.clicked.connect(self.new_key)
        self.copy_button = QPushButton("Copy key")
        self.copy_button.setToolTip("Copy the selected key again (from the OS keyring)")
        self.copy_button.clicked.connect(self.copy_selected)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("Give the selected key a new name; its secret stays the same, so Voka "
                                      "keeps working")
        self.rename_button.clicked.connect(self.rename_selected)
        self.rotate_button = QPushButton("Rotate…")
        self.rotate_button.setToolTip("Give the key a new secret; the old one keeps working for a grace "
                                      "period so you can update Voka without downtime")
        self.rotate_button.clicked.connect(self.rotate_selected)
        self.revoke_button = QPushButton("Revoke")
        self.revoke_button.setToolTip("Stop the selected key at once")
        self.revoke_button.clicked.connect(self.revoke_selected)
        buttons = QHBoxLayout()
        for button in (self.create_button, self.copy_button, self.rename_button, self.rotate_button,
                       self.revoke_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)

        controller.keysChanged.connect(self.refresh)
        controller.serverStateChanged.connect(lambda state: state == "serving" and self.refresh())
        controller.requestsArrived.connect(self._maybe_refresh_usage)
        self._usage_dirty = False
        self._asked = self._shown = 0  # refreshes asked for, and the latest whose answer is shown
        self._standing = ""  # the page's own note (no keys yet, the first start's key), not news
        self.refresh()
        self._selection_changed()

    # ---- overridable questions (tests answer them without a modal loop) -------------------------
    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def ask_new_name(self, current: str) -> str | None:
        name, ok = QInputDialog.getText(self, "Rename key", "New name for the key:",
                                        QLineEdit.EchoMode.Normal, current)
        return name if ok else None

    def ask_grace_hours(self) -> float | None:
        hours, ok = QInputDialog.getDouble(self, "Rotate key", "Hours the old secret keeps working:", 24.0,
                                           0.0, 24.0 * 30, 1)
        return hours if ok else None

    # ---- listing -------------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        self._asked += 1
        asked = self._asked
        self.controller.calls.blocking(keyadmin.list_keys, self.controller.paths,
                                       on_done=lambda records: self._show(records, asked),
                                       on_error=self._problem)

    def _maybe_refresh_usage(self, _events: object) -> None:
        """Last-used times change with traffic; re-read at most every few seconds, off the GUI thread."""
        if not self._usage_dirty:
            self._usage_dirty = True
            QTimer.singleShot(3000, self._usage_refresh)

    def _usage_refresh(self) -> None:
        self._usage_dirty = False
        self.refresh()

    def _show(self, records: list[ApiKey], asked: int) -> None:
        """Show the keys read by the `asked`-th refresh. Reads run side by side on worker threads, so an
        older one can finish last; it would bring back a key just revoked or hide one just made."""
        if asked < self._shown:
            return
        self._shown = asked
        selected = self.selected()
        self.records = records
        self.table.setRowCount(len(records))
        for row, key in enumerate(records):
            rate = str(key.rate_limit) if key.rate_limit else "default"
            can = "; ".join(SCOPE_WORDS[scope] for scope in SCOPES if scope in key.scopes)
            values = (key.name, key.id, can, ", ".join(key.tools) if key.tools else "all",
                      rate, key.status, _when(key.created_at), _when(key.last_used_at), str(key.use_count))
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column == 2:
                    item.setToolTip("Scopes: " + ", ".join(key.scopes))
                if column == 5 and key.status == "rotating" and key.old_expires_at:
                    item.setToolTip(f"The old secret works until {_when(key.old_expires_at)}")
                self.table.setItem(row, column, item)
            if selected is not None and key.id == selected.id:
                self.table.selectRow(row)
        standing = self.message.text() in ("", NO_KEYS, self._standing)  # nothing the owner just did
        self._standing = NO_KEYS if not records else self._first_key_note(records)
        if standing:
            self.message.setText(self._standing)
        self._selection_changed()

    def _first_key_note(self, records: list[ApiKey]) -> str:
        """Tell about the key the first start made this run (the owner never asked for it)."""
        secret = self.controller.server.first_key
        made = hash_key(secret) if secret else None
        key = next((k for k in records if k.hash == made and k.status in ("active", "rotating")), None)
        if key is None:
            return ""
        return (f"Voka Bridge made the key “{key.name}” when it first started, so Voka can use your shop at "
                f"once: it {scope_words(key.scopes)} through your tools (no raw SQL). Rename or revoke it "
                "here whenever you like.")

    def selected(self) -> ApiKey | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.records):
            return None
        return self.records[rows[0].row()]

    def select(self, name: str) -> None:
        for row, key in enumerate(self.records):
            if key.name == name:
                self.table.selectRow(row)

    @Slot()
    def _selection_changed(self) -> None:
        key = self.selected()
        alive = key is not None and key.status in ("active", "rotating")
        for button in (self.copy_button, self.rotate_button, self.revoke_button):
            button.setEnabled(alive)
        self.rename_button.setEnabled(key is not None)

    def _problem(self, exc: BaseException) -> None:
        if isinstance(exc, KeyProblem):
            self.message.setText(str(exc))
        else:
            self.message.setText(f"That did not work: {exc}")

    # ---- actions -------------------------------------------------------------------------------
    @Slot()
    def new_key(self) -> NewKeyDialog:
        tools = [tool.name for tool in self.controller.server.bridge.catalog]
        self.dialog = NewKeyDialog(tools, self)
        self.dialog.accepted.connect(self._create_from_dialog)
        self.dialog.open()
        return self.dialog

    def _create_from_dialog(self) -> None:
        dialog = self.dialog
        assert dialog is not None
        scopes = dialog.chosen_scopes()
        if not scopes:
            self.message.setText("A key needs to be allowed at least one thing: tick what it can do.")
            return
        rate = dialog.rate.value() or None
        self.controller.calls.blocking(
            lambda: keyadmin.create_key(self.controller.paths, dialog.name.text(), scopes,
                                        tools=dialog.chosen_tools(), rate_limit=rate),
            on_done=self._created, on_error=self._problem)

    def _created(self, result: tuple[ApiKey, str]) -> None:
        record, secret = result
        self.message.setText(f"Created key “{record.name}”.")
        self.controller.keys_changed()
        self._show_secret(f"Your new key “{record.name}”", secret, bool(record.secret_kept))

    def _show_secret(self, title: str, secret: str, kept: bool) -> None:
        self.secret_dialog = SecretDialog(title, secret, self, kept=kept)
        self.secret_dialog.open()

    @Slot()
    def copy_selected(self) -> None:
        key = self.selected()
        if key is None:
            return

        def done(secret: str) -> None:
            QGuiApplication.clipboard().setText(secret)
            self.message.setText(f"Copied key “{key.name}”.")

        self.controller.calls.blocking(keyadmin.key_secret, self.controller.paths, key.id, on_done=done,
                                       on_error=self._problem)

    @Slot()
    def rename_selected(self) -> None:
        key = self.selected()
        if key is None:
            return
        name = self.ask_new_name(key.name)
        if name is None or name.strip() == key.name:
            return

        def done(record: ApiKey) -> None:
            self.message.setText(f"Renamed “{key.name}” to “{record.name}”; its secret is unchanged.")
            self.controller.keys_changed()

        self.controller.calls.blocking(keyadmin.rename_key, self.controller.paths, key.id, name,
                                       on_done=done, on_error=self._problem)

    @Slot()
    def rotate_selected(self) -> None:
        key = self.selected()
        if key is None:
            return
        hours = self.ask_grace_hours()
        if hours is None:
            return

        def done(result: tuple[ApiKey, str]) -> None:
            record, secret = result
            until = _when(record.old_expires_at) if record.old_expires_at else "no longer (no grace period)"
            self.message.setText(f"Rotated “{record.name}”; the old secret works until {until}.")
            self.controller.keys_changed()
            self._show_secret(f"New secret for “{record.name}”", secret, bool(record.secret_kept))

        self.controller.calls.blocking(keyadmin.rotate_key, self.controller.paths, key.id, hours,
                                       on_done=done, on_error=self._problem)

    @Slot()
    def revoke_selected(self) -> None:
        key = self.selected()
        if key is None or not self.confirm("Revoke key", f"Stop the key “{key.name}” now? Anything using it, "
                                           "Voka included, is refused from this moment."):
            return

        def done(record: ApiKey) -> None:
            self.message.setText(f"Revoked “{record.name}”.")
            self.controller.keys_changed()
            self.controller.notify(NoticeRules.key_revoked(record.name))

        self.controller.calls.blocking(keyadmin.revoke_key, self.controller.paths, key.id, on_done=done,
                                       on_error=self._problem)
