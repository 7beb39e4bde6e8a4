"""Where the owner's data lives: the demo shop, an SQLite file, or a PostgreSQL server (no rules here)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from server.dbconnect import DatabaseChoice


class DatabaseForm(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.demo = QRadioButton("The demo shop (customers, inventory, orders), to try things out")
        self.sqlite = QRadioButton("An SQLite database file")
        self.postgres = QRadioButton("A PostgreSQL server")
        self.group = QButtonGroup(self)
        for button in (self.demo, self.sqlite, self.postgres):
            self.group.addButton(button)
            button.toggled.connect(self._kind_changed)
        self.path = QLineEdit()
        self.path.setPlaceholderText("/path/to/shop.sqlite3")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(browse)
        self.sqlite_box = QWidget()
        sqlite_form = QFormLayout(self.sqlite_box)
        sqlite_form.addRow("File", path_row)
        self.host = QLineEdit("127.0.0.1")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(5432)
        self.database = QLineEdit()
        self.user = QLineEdit()
        self.user.setToolTip("Best a user that may only read and write the shop's tables, not a superuser")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setToolTip("Kept in your system's keyring, never in a file. Leave empty to keep the "
                                 "stored one.")
        self.pg_box = QWidget()
        pg_form = QFormLayout(self.pg_box)
        pg_form.addRow("Server", self.host)
        pg_form.addRow("Port", self.port)
        pg_form.addRow("Database", self.database)
        pg_form.addRow("User", self.user)
        pg_form.addRow("Password", self.password)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.demo, self.sqlite, self.sqlite_box, self.postgres, self.pg_box):
            layout.addWidget(widget)
        for line in (self.path, self.host, self.database, self.user, self.password):
            line.textChanged.connect(self.changed)
        self.port.valueChanged.connect(self.changed)
        self.demo.setChecked(True)
        self._kind_changed()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SQLite database", self.path.text(),
                                              "SQLite databases (*.sqlite *.sqlite3 *.db);;All files (*)")
        if path:
            self.path.setText(path)

    def _kind_changed(self, *_args: object) -> None:
        self.sqlite_box.setVisible(self.sqlite.isChecked())
        self.pg_box.setVisible(self.postgres.isChecked())
        self.changed.emit()

    def choice(self) -> DatabaseChoice:
        if self.sqlite.isChecked():
            return DatabaseChoice("sqlite", sqlite_path=self.path.text())
        if self.postgres.isChecked():
            return DatabaseChoice("postgresql", host=self.host.text(), port=self.port.value(),
                                  database=self.database.text(), user=self.user.text())
        return DatabaseChoice("demo")

    def set_choice(self, choice: DatabaseChoice) -> None:
        {"demo": self.demo, "sqlite": self.sqlite, "postgresql": self.postgres}[choice.kind].setChecked(True)
        if choice.kind == "sqlite":
            self.path.setText(choice.sqlite_path)
        elif choice.kind == "postgresql":
            self.host.setText(choice.host)
            self.port.setValue(choice.port)
            self.database.setText(choice.database)
            self.user.setText(choice.user)

    def typed_password(self) -> str | None:
        return self.password.text() or None
