"""The test console's answer: rows as a table, an action's result as field/value pairs, a refusal as a
plain sentence, and the exact JSON one click away (what Voka itself reads)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.widgets.fonts import mono

_Index = QModelIndex | QPersistentModelIndex


def cell_text(value: Any) -> str:
    """A value as a table cell shows it: lists and objects (an order's items) as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@dataclass
class AnswerTable:
    """An answer laid out for the table, with the sentence above it."""

    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    summary: str = ""
    cut: bool = False
    pairs: bool = False  # field/value pairs: one record read down, not columns of numbers


def answer_table(payload: Any) -> AnswerTable | None:
    """Rows (a query), field/value pairs (an action or any single object), or None for an answer that is
    not a success in the Voka format (a refusal, or not JSON)."""
    if not isinstance(payload, dict) or payload.get("success") is not True:
        return None
    data = payload.get("data")
    if isinstance(data, list):
        if data and all(isinstance(row, dict) for row in data):
            headers = list(dict.fromkeys(key for row in data for key in row))
            rows = [[row.get(h) for h in headers] for row in data]
        else:
            headers, rows = (["value"], [[item] for item in data]) if data else ([], [])
        count = len(rows)
        summary = "No rows: nothing matched." if not count else f"{count} row{'s' if count != 1 else ''}."
        return AnswerTable(headers, rows, summary, bool(payload.get("truncated")))
    if isinstance(data, dict):
        return AnswerTable(["Field", "Value"], [[key, value] for key, value in data.items()],
                           "Done. The answer:", pairs=True)
    return AnswerTable(["value"], [[data]], "Done. The answer:")


class AnswerModel(QAbstractTableModel):
    """The answer's cells, read-only; values keep their types (numbers align right)."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[Any]] = []
        self.align_numbers = True

    def set_table(self, headers: list[str], rows: list[list[Any]], *, align_numbers: bool = True) -> None:
        self.beginResetModel()
        self.headers, self.rows, self.align_numbers = headers, rows, align_numbers
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.headers)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        value = self.rows[index.row()][index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return cell_text(value)
        if role == Qt.ItemDataRole.TextAlignmentRole and self.align_numbers \
                and isinstance(value, int | float) and not isinstance(value, bool):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.headers[section] if section < len(self.headers) else None
        return str(section + 1)


class AnswerView(QWidget):
    """Summary line, a note when rows were cut, and the table or the raw JSON (Show JSON)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cut_note = QLabel()
        self.cut_note.setWordWrap(True)
        self.cut_note.setVisible(False)
        self.json_toggle = QPushButton("Show JSON")
        self.json_toggle.setCheckable(True)
        self.json_toggle.setToolTip("Switch between the table and the exact JSON Voka receives")
        self.json_toggle.toggled.connect(self._toggled)
        self.model = AnswerModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.json_view = QPlainTextEdit()
        self.json_view.setReadOnly(True)
        self.json_view.setFont(mono())
        self.json_view.setPlaceholderText("The answer appears here.")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.json_view)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.json_toggle)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.cut_note)
        layout.addWidget(self.stack, 1)
        layout.addStretch(0)  # takes the room when a refusal shows only its sentence
        self._mode = "empty"  # empty | table | message (a refusal, no rows) | raw (not the Voka format)
        self.clear()

    def clear(self) -> None:
        """Nothing shown: no rows, no JSON, no note (a new tool was chosen, or nothing was sent)."""
        self.model.set_table([], [])
        self.json_view.clear()
        self.summary.clear()
        self.cut_note.clear()
        self.cut_note.setVisible(False)
        self.json_toggle.setEnabled(False)
        self._mode = "empty"
        self._show(as_json=self.json_toggle.isChecked())

    def is_empty(self) -> bool:
        return self.model.rowCount() == 0 and not self.json_view.toPlainText() and not self.summary.text()

    def show_answer(self, payload: Any, text: str) -> None:
        """Lay out one answer; `payload` is the parsed JSON (None when the answer was not JSON)."""
        self.clear()
        self.json_toggle.setEnabled(True)
        self.json_view.setPlainText(text if payload is None
                                    else json.dumps(payload, indent=2, ensure_ascii=False))
        table = answer_table(payload)
        if table is not None:
            self._mode = "table" if table.rows else "message"  # "No rows" needs no empty grid
            self.model.set_table(table.headers, table.rows, align_numbers=not table.pairs)
            self.table.resizeColumnsToContents()
            self.summary.setText(table.summary)
            if table.cut:
                self.cut_note.setText(f"Cut short: only the first {len(table.rows)} rows came back. There "
                                      "are more, but the row limit stopped the answer here.")
                self.cut_note.setVisible(True)
            self._show(as_json=self.json_toggle.isChecked())
            return
        if isinstance(payload, dict) and payload.get("success") is False:
            code = f" ({payload['code']})" if payload.get("code") else ""
            self.summary.setText(f"Not done: {payload.get('error') or 'no reason given'}{code}")
            self._mode = "message"
        else:
            self.summary.setText("The answer is not in the Voka format; here it is as it came.")
            self._mode = "raw"
            self.json_toggle.setEnabled(False)  # the text is all there is to show
        self._show(as_json=self.json_toggle.isChecked())

    def json_text(self) -> str:
        return self.json_view.toPlainText()

    @Slot(bool)
    def _toggled(self, as_json: bool) -> None:
        self._show(as_json=as_json)

    def _show(self, *, as_json: bool) -> None:
        """The table, or the JSON; a refusal is its sentence alone until the owner asks for the JSON."""
        raw = as_json or self._mode in ("empty", "raw")
        self.stack.setCurrentWidget(self.json_view if raw else self.table)
        self.stack.setVisible(raw or self._mode == "table")
        self.json_toggle.setText("Show table" if as_json else "Show JSON")
