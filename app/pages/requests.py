"""Requests: every call live, filters, a detail pane with (masked) bodies, pause, CSV export, history."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QItemSelection, Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.pages.requests_model import DEFAULT_CAP, STATUS_FILTERS, RequestsFilter, RequestsModel
from server.audit import what_was_asked
from server.events import RequestFinished
from server.history import export_csv, history_page

HISTORY_PAGE = 200
ALL_TOOLS, ALL_KEYS = "All tools", "All keys"


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def describe(event: RequestFinished, audit_id: int | None = None) -> str:
    lines = [f"{event.method} {event.route} → {event.status}" + (f" ({event.error_code})"
                                                                  if event.error_code else ""),
             f"Asked for: {what_was_asked(event)}",
             f"Time: {event.ts}", f"Key: {event.key_name or 'none'}", f"Client: {event.client}",
             f"Protocol: {event.protocol}",
             f"Duration: {event.duration_ms:.1f} ms", f"Rows: {'—' if event.rows is None else event.rows}"]
    if event.detail:
        lines.insert(1, f"Reason: {event.detail}")
    if event.request_body is None and event.response_body is None:
        lines += ["", "Bodies are shown only for requests made while the app is open; the history keeps "
                  "the summary above."]
    else:
        lines += ["", "Request body (keys and passwords masked):",
                  _pretty(event.masked_request()) or "(none was sent)",
                  "", "Response body:", _pretty(event.masked_response()) or "(empty)"]
    return "\n".join(lines)


class RequestsPage(QWidget):
    title = "Requests"
    icon_name = "requests"

    def __init__(self, controller: AppController, cap: int = DEFAULT_CAP,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.model = RequestsModel(cap, self)
        self.proxy = RequestsFilter(self)
        self.proxy.setSourceModel(self.model)

        self.status_filter = QComboBox()
        self.status_filter.addItems(list(STATUS_FILTERS))
        self.status_filter.setToolTip("Show only answers of this kind")
        self.tool_filter = QComboBox()
        self.tool_filter.addItem(ALL_TOOLS)
        self.tool_filter.setToolTip("Show only calls of one tool")
        self.key_filter = QComboBox()
        self.key_filter.addItem(ALL_KEYS)
        self.key_filter.setToolTip("Show only calls made with one API key")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search address, route, tool, key, error…")
        self.search.setClearButtonEnabled(True)
        for combo in (self.status_filter, self.tool_filter, self.key_filter):
            combo.currentIndexChanged.connect(self.apply_filter)
        self.search.textChanged.connect(self.apply_filter)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Freeze the table to read it; new requests are kept and shown on resume")
        self.pause_button.toggled.connect(self.set_paused)
        self.older_button = QPushButton("Load older")
        self.older_button.setToolTip("Page in older requests from the audit log (pauses the live view)")
        self.older_button.clicked.connect(self.load_older)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the requests shown (with the filters applied) as a CSV file")
        self.export_button.clicked.connect(self.choose_export)
        bar = QHBoxLayout()
        for widget in (self.status_filter, self.tool_filter, self.key_filter):
            bar.addWidget(widget)
        bar.addWidget(self.search, 1)
        for widget in (self.pause_button, self.older_button, self.export_button):
            bar.addWidget(widget)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in enumerate((100, 110, 110, 150, 170, 60, 90, 50)):
            self.table.setColumnWidth(column, width)
        self.table.selectionModel().selectionChanged.connect(self._selected)
        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a request to see what was asked and answered.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setSizes([420, 200])
        self.counter = QLabel()

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.counter)

        self._seen_tools: set[str] = set()
        self._seen_keys: set[str] = set()
        controller.requestsArrived.connect(self.add_requests)
        controller.calls.blocking(history_page, controller.paths, HISTORY_PAGE,
                                  on_done=self._initial_history, on_error=self._history_failed)
        self._update_counter()

    # ---- live ----------------------------------------------------------------------------------
    @Slot(list)
    def add_requests(self, events: list[RequestFinished]) -> None:
        self.model.add_live(events)
        self._learn(events)
        self._update_counter()

    def _learn(self, events: list[RequestFinished]) -> None:
        for event in events:
            if event.tool and event.tool not in self._seen_tools:
                self._seen_tools.add(event.tool)
                self.tool_filter.addItem(event.tool)
            if event.key_name and event.key_name not in self._seen_keys:
                self._seen_keys.add(event.key_name)
                self.key_filter.addItem(event.key_name)

    @Slot(bool)
    def set_paused(self, paused: bool) -> None:
        if self.pause_button.isChecked() != paused:
            self.pause_button.setChecked(paused)
            return
        self.model.set_paused(paused)
        self.pause_button.setText("Resume" if paused else "Pause")
        self._update_counter()

    def _update_counter(self) -> None:
        text = (f"{self.proxy.rowCount():,} shown · {self.model.rowCount():,} kept "
                f"(at most {self.model.cap:,})")
        if self.model.paused:
            text += f" · paused, {self.model.held:,} new waiting"
        if self.controller.pump.dropped:
            text += f" · {self.controller.pump.dropped:,} not shown (the window was busy; the log has them)"
        self.counter.setText(text)

    # ---- filters and detail --------------------------------------------------------------------
    @Slot()
    def apply_filter(self, *_args: object) -> None:
        tool = self.tool_filter.currentText()
        key = self.key_filter.currentText()
        self.proxy.apply(status=STATUS_FILTERS[self.status_filter.currentText()],
                              tool="" if tool == ALL_TOOLS else tool, key="" if key == ALL_KEYS else key,
                              text=self.search.text())
        self.table.scrollToTop()  # the rows above the old position may be others now: start at the top
        self._update_counter()

    @Slot(QItemSelection, QItemSelection)
    def _selected(self, *_args: object) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.detail.clear()
            return
        event = self.model.event_at(self.proxy.mapToSource(rows[0]).row())
        self.detail.setPlainText(describe(event))

    # ---- history -------------------------------------------------------------------------------
    def _initial_history(self, page: list[tuple[int, RequestFinished]]) -> None:
        self.model.add_history(page, older=False)
        self._learn([e for _, e in page])
        self._update_counter()

    def _history_failed(self, exc: BaseException) -> None:
        self.counter.setText(f"History could not be read: {exc}")

    @Slot()
    def load_older(self) -> None:
        self.set_paused(True)
        self.older_button.setEnabled(False)
        self._fetch_older(self.model.oldest_audit_id())

    def _fetch_older(self, before_id: int | None) -> None:
        def done(page: list[tuple[int, RequestFinished]]) -> None:
            added = self.model.add_history(page, older=True)
            self._learn([e for _, e in page])
            if not added and len(page) == HISTORY_PAGE:  # all already shown live: look further back
                self._fetch_older(page[-1][0])
                return
            self.older_button.setEnabled(True)
            self._update_counter()
            if not added:
                self.counter.setText(self.counter.text() + " · no older requests")

        self.controller.calls.blocking(history_page, self.controller.paths, HISTORY_PAGE, before_id,
                                       on_done=done, on_error=self._history_failed)

    # ---- export --------------------------------------------------------------------------------
    @Slot()
    def choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export requests", "requests.csv", "CSV files (*.csv)")
        if path:
            self.export_to(Path(path))

    def export_to(self, path: Path) -> None:
        events = [self.model.event_at(row) for row in self.proxy.visible_rows()]
        self.export_button.setEnabled(False)

        def done(count: int) -> None:
            self.export_button.setEnabled(True)
            self.counter.setText(f"Exported {count:,} requests to {path}")

        def failed(exc: BaseException) -> None:
            self.export_button.setEnabled(True)
            self.counter.setText(f"Export failed: {exc}")

        self.controller.calls.blocking(export_csv, events, path, on_done=done, on_error=failed)
