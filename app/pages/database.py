"""Database: where the data lives, Test connection in plain words, and a schema browser."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.widgets.database_form import DatabaseForm
from server.config import ConfigError
from server.db.base import Table
from server.dbconnect import ConnectionReport, DatabaseChoice, save_database, test_connection
from server.errors import BridgeError


class DatabasePage(QWidget):
    title = "Database"
    icon_name = "database"

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.form = DatabaseForm()
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Connect with these settings and read the table list (nothing is saved)")
        self.test_button.clicked.connect(self.test)
        self.save_button = QPushButton("Save and restart server")
        self.save_button.setToolTip("Use this database from now on; calls in progress finish first")
        self.save_button.clicked.connect(self.save)
        self.result = QLabel()
        self.result.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.test_button)
        buttons.addWidget(self.save_button)
        buttons.addStretch(1)
        settings = QGroupBox("Connection")
        settings_layout = QVBoxLayout(settings)
        settings_layout.addWidget(self.form)
        settings_layout.addLayout(buttons)
        settings_layout.addWidget(self.result)

        self.schema = QTreeWidget()
        self.schema.setHeaderLabels(["Table / column", "Type", "Key", "Nullable", "Rows"])
        self.schema.setColumnWidth(0, 260)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the tables of the database the server is using now")
        self.refresh_button.clicked.connect(self.refresh_schema)
        browser = QGroupBox("Tables in the database being served")
        browser_layout = QVBoxLayout(browser)
        browser_layout.addWidget(self.schema)
        browser_layout.addWidget(self.refresh_button)

        layout = QVBoxLayout(self)
        layout.addWidget(settings)
        layout.addWidget(browser, 1)
        self.where = QLabel()
        layout.addWidget(self.where)

        controller.serverStateChanged.connect(self._state_changed)
        self.load_current()

    def load_current(self) -> None:
        bridge = self.controller.server.bridge
        configured = bridge.config.database.url
        try:
            self.form.set_choice(DatabaseChoice.from_url(configured, self.controller.paths.config_dir))
        except (ValueError, ConfigError):
            self.form.set_choice(DatabaseChoice("demo"))
        self._shown = self.form.choice()

    def edited(self) -> bool:
        """Whether the owner changed the form since it last showed config.toml (or their last save)."""
        return self.form.choice() != self._shown or self.form.typed_password() is not None

    @Slot(str)
    def _state_changed(self, state: str) -> None:
        if state == "serving":
            if not self.edited():  # a server restart must not wipe what the owner is typing here
                self.load_current()
            self.refresh_schema()

    # ---- test and save -------------------------------------------------------------------------
    @Slot()
    def test(self) -> None:
        try:
            choice = self.form.choice()
            url = choice.url() or self._demo_url()
        except ConfigError as exc:
            self.result.setText(str(exc))
            return
        self.test_button.setEnabled(False)
        self.result.setText("Connecting…")
        settings = self.controller.server.bridge.config.database
        self.controller.calls.run(test_connection(url, password=self.form.typed_password(), settings=settings,
                                                  base_dir=self.controller.paths.config_dir),
                                  on_done=self._tested, on_error=self._failed)

    def _demo_url(self) -> str:
        return "sqlite:///" + self.controller.paths.demo_db.as_posix().lstrip("/")

    def _tested(self, report: ConnectionReport) -> None:
        self.test_button.setEnabled(True)
        self.result.setText(("✔ " if report.ok else "✘ ") + report.message)

    def _failed(self, exc: BaseException) -> None:
        self.test_button.setEnabled(True)
        self.save_button.setEnabled(True)
        self.result.setText(exc.detail if isinstance(exc, BridgeError) else str(exc))

    @Slot()
    def save(self) -> None:
        choice = self.form.choice()
        self.save_button.setEnabled(False)

        def saved(url: str) -> None:
            self.save_button.setEnabled(True)
            self.form.password.clear()
            self._shown = choice
            self.result.setText("Saved. Restarting the server with this database…")
            self.controller.restart()

        self.controller.calls.blocking(save_database, self.controller.paths.config_file, choice,
                                       self.form.typed_password(), on_done=saved, on_error=self._failed)

    # ---- schema --------------------------------------------------------------------------------
    @Slot()
    def refresh_schema(self) -> None:
        if not self.controller.serving:
            self.where.setText("The server is stopped; start it to browse the tables.")
            return
        bridge = self.controller.server.bridge

        async def read() -> tuple[str, list[Table]]:
            db = await bridge.database()
            return db.describe(), await db.schema()

        self.controller.calls.run(read(), on_done=self._show_schema,
                                  on_error=lambda exc: self.where.setText(
                                      exc.detail if isinstance(exc, BridgeError) else str(exc)))

    def _show_schema(self, result: tuple[str, list[Table]]) -> None:
        where, tables = result
        self.where.setText(f"Serving {where}")
        self.schema.clear()
        for table in tables:
            rows = "" if table.row_count is None else f"{table.row_count:,}"
            item = QTreeWidgetItem([table.name, "table", "", "", rows])
            for column in table.columns:
                QTreeWidgetItem(item, [column.name, column.type, "primary key" if column.primary_key else "",
                                       "yes" if column.nullable else "no", ""])
            self.schema.addTopLevelItem(item)
