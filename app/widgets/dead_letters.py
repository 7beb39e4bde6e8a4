"""Events to Voka that could not be delivered (dead letters), with Resend.

Shows what server.webhooks.admin returns and asks it to resend; the rules (what is dead, how long a
resend is retried) live there. Loaded when built, shown or the server (re)starts, and after each resend,
off the GUI thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from server.webhooks import admin

COLUMNS = ("Event", "Created (UTC)", "Tries", "Why", "Webhook id")


class DeadLetters(QGroupBox):
    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__("Events to Voka that could not be delivered", parent)
        self.controller = controller
        self.rows: list[admin.Row] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.empty = QLabel("None: every event reached Voka (or none was sent yet).")
        self.resend_button = QPushButton("Resend")
        self.resend_button.setToolTip("Send the selected event to Voka again, under the same webhook id")
        self.resend_button.setEnabled(False)
        self.resend_button.clicked.connect(self.resend_selected)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        buttons = QHBoxLayout()
        buttons.addWidget(self.empty, 1)
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.resend_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        controller.serverStateChanged.connect(lambda _state: self.refresh())
        self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        self.controller.calls.blocking(admin.messages, self.controller.paths, on_done=self._show,
                                       on_error=self._failed)

    def _show(self, rows: list[admin.Row]) -> None:
        self.rows = rows
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, text in enumerate((row.event, row.created, str(row.attempts), row.detail, row.id)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(index, column, item)
        self.table.setVisible(bool(rows))
        self.empty.setVisible(not rows)
        self._selection_changed()

    def _selected(self) -> admin.Row | None:
        chosen = self.table.selectionModel().selectedRows()
        return self.rows[chosen[0].row()] if chosen and chosen[0].row() < len(self.rows) else None

    def _selection_changed(self) -> None:
        self.resend_button.setEnabled(self._selected() is not None)

    def resend_selected(self) -> None:
        row = self._selected()
        if row is None:
            return
        self.resend_button.setEnabled(False)
        hours = self.controller.server.bridge.config.webhooks.max_age_hours
        self.controller.calls.blocking(admin.resend, self.controller.paths, row.id, hours,
                                       on_done=self._resent, on_error=self._failed)

    def _resent(self, row: admin.Row) -> None:
        self.controller.notify_text("Event queued again",
                                    f"{row.event} ({row.id}) goes to Voka within a second.")
        self.refresh()

    def _failed(self, exc: BaseException | Any) -> None:
        self.controller.notify_text("Dead letters", str(exc), critical=True)
