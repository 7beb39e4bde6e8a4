"""The input for a JSON parameter: a row editor for lists (like create_order's items), JSON text otherwise.

A shop owner should not have to type `[{"product_id": …}]`. When the parameter's schema is a list of
plain values, or of objects whose properties are plain values, each item is one table row with a typed
input per property. Anything deeper (a list inside an item, say) stays JSON text, and the owner can
always switch to JSON. The editor only shapes input; the tool's schema (server side) has the last word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QDoubleValidator, QIntValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from app.widgets.fonts import mono

_INT_RANGE = 2**31 - 1
_PLAIN_TYPES = ("string", "integer", "number", "boolean")
_EXAMPLES = {"string": "text", "integer": 1, "number": 1.5, "boolean": True}
_GENERIC_PLACEHOLDER = 'JSON, e.g. [1, 2] or {"name": "value"}'


@dataclass(frozen=True)
class Column:
    """One property of a list item, as the row editor shows it."""

    name: str
    type: str
    required: bool
    description: str = ""
    enum: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    default: Any = None

    def holds(self, value: Any) -> bool:
        """Whether this column's input can show the value as it is."""
        return _is_type(value, self.type) and (self.enum is None or value in self.enum)


@dataclass(frozen=True)
class RowShape:
    """What a row editor can hold: objects with these columns, or plain values (one "value" column)."""

    columns: tuple[Column, ...]
    plain_values: bool = False

    def example(self) -> str:
        """A one-item JSON example, for the JSON box's placeholder."""
        if self.plain_values:
            return json.dumps([_EXAMPLES[self.columns[0].type]])
        return json.dumps([{c.name: _EXAMPLES[c.type] for c in self.columns}])

    def fits(self, value: Any) -> bool:
        """Whether a value can be shown as rows without losing anything."""
        if not isinstance(value, list):
            return False
        if self.plain_values:
            return all(self.columns[0].holds(item) for item in value)
        names = {c.name: c for c in self.columns}
        return all(isinstance(item, dict) and all(k in names and (v is None or names[k].holds(v))
                                                  for k, v in item.items())
                   for item in value)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _column(name: str, schema: Any, required: bool) -> Column | None:
    if not isinstance(schema, dict) or schema.get("type") not in _PLAIN_TYPES:
        return None
    enum = schema.get("enum")
    return Column(name, schema["type"], required, str(schema.get("description", "")),
                  tuple(enum) if isinstance(enum, list) and enum else None,
                  schema.get("minimum"), schema.get("maximum"), schema.get("maxLength"),
                  schema.get("default"))


def row_shape(schema: dict[str, Any] | None) -> RowShape | None:
    """The rows a list schema fits in, or None when a table cannot hold it (no schema, not a list, or
    items nested beyond one level)."""
    if not isinstance(schema, dict) or schema.get("type") != "array":
        return None
    items = schema.get("items")
    if not isinstance(items, dict):
        return None
    if items.get("type") in _PLAIN_TYPES:
        column = _column("value", items, True)
        return RowShape((column,), plain_values=True) if column else None
    properties = items.get("properties")
    if items.get("type") != "object" or not isinstance(properties, dict) or not properties:
        return None
    required = set(items.get("required") or [])
    columns = [_column(name, prop, name in required) for name, prop in properties.items()]
    if any(c is None for c in columns):
        return None
    return RowShape(tuple(c for c in columns if c is not None))


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ListEditor(QWidget):
    """Rows with Add row / Remove row, and a switch to plain JSON text (the only input for other shapes)."""

    def __init__(self, shape: RowShape | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shape = shape
        self.json_edit = QPlainTextEdit()
        self.json_edit.setFont(mono())
        self.json_edit.setPlaceholderText(shape.example() if shape else _GENERIC_PLACEHOLDER)
        self.json_edit.setFixedHeight(80)
        self.json_edit.setAccessibleName("JSON")
        self.table = QTableWidget(0, len(shape.columns) if shape else 0)
        self.add_button = QPushButton("Add row")
        self.remove_button = QPushButton("Remove row")
        self.json_toggle = QCheckBox("Type it as JSON")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        if shape is None:  # a shape the table cannot hold: JSON only
            layout.addWidget(self.json_edit)
            for widget in (self.table, self.add_button, self.remove_button, self.json_toggle):
                widget.setVisible(False)
            return
        self.table.setHorizontalHeaderLabels([c.name + (" *" if c.required else "") for c in shape.columns])
        for index, column in enumerate(shape.columns):
            header = self.table.horizontalHeaderItem(index)
            if header is not None and column.description:
                header.setToolTip(column.description)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(110)
        self.table.setMaximumHeight(180)
        self.add_button.setToolTip("Add one more item to the list")
        self.add_button.clicked.connect(self._add_clicked)
        self.remove_button.setToolTip("Remove the item you are in (or the last one)")
        self.remove_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keep focus on the row to remove
        self.remove_button.clicked.connect(self.remove_row)
        self.json_toggle.setToolTip("Type the whole list as JSON text instead of rows")
        self.json_toggle.toggled.connect(self._json_toggled)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self.json_toggle)
        layout.addWidget(self.table)
        layout.addWidget(self.json_edit)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        self.json_edit.setVisible(False)
        self._update_buttons()

    # ---- rows ----------------------------------------------------------------------------------
    def add_row(self, values: dict[str, Any] | None = None) -> int:
        """Append a row (empty, or with the schema's defaults, or the given values); returns its index."""
        assert self.shape is not None
        row = self.table.rowCount()
        self.table.insertRow(row)
        for index, column in enumerate(self.shape.columns):
            value = (values or {}).get(column.name, column.default if values is None else None)
            self.table.setCellWidget(row, index, self._input_for(column, value))
        self._update_buttons()
        return row

    @Slot()
    def _add_clicked(self) -> None:
        """A new row, ready to type in."""
        row = self.add_row()
        first = self.table.cellWidget(row, 0)
        if first is not None:
            first.setFocus()

    @Slot()
    def remove_row(self) -> None:
        """Remove the selected rows, else the row being typed in, else the last row."""
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        if not rows:
            focus = QApplication.focusWidget()
            rows = {r for r in range(self.table.rowCount()) for c in range(self.table.columnCount())
                    if focus is not None and self.table.cellWidget(r, c) is focus}
        for row in sorted(rows, reverse=True) or [self.table.rowCount() - 1]:
            if row >= 0:
                self.table.removeRow(row)
        self._update_buttons()

    def cell(self, row: int, name: str) -> QWidget:
        """The input of one property in one row."""
        assert self.shape is not None
        index = next(i for i, c in enumerate(self.shape.columns) if c.name == name)
        widget = self.table.cellWidget(row, index)
        assert widget is not None
        return widget

    @staticmethod
    def _input_for(column: Column, value: Any) -> QWidget:
        if column.enum or column.type == "boolean":
            combo = QComboBox()
            if not column.required:
                combo.addItem("", None)
            for option in column.enum or (True, False):
                combo.addItem(_cell_text(option), option)
            combo.setCurrentIndex(max(combo.findData(value), 0) if value is not None else 0)
            combo.setToolTip(column.description)
            return combo
        line = QLineEdit(_cell_text(value))
        line.setToolTip(column.description)
        line.setAccessibleName(column.name)
        if column.type == "integer":
            low = column.minimum
            bottom = int(low) if low is not None and low >= 0 else -_INT_RANGE  # "-" can start a negative
            line.setValidator(QIntValidator(bottom, _INT_RANGE, line))
            line.setPlaceholderText("whole number")
        elif column.type == "number":
            line.setValidator(QDoubleValidator(line))
            line.setPlaceholderText("number")
        elif column.max_length:
            line.setMaxLength(int(column.max_length))
        return line

    def _row_texts(self, row: int) -> list[tuple[Column, Any]]:
        """(column, what was entered) for one row: text from a line, the chosen value from a list."""
        assert self.shape is not None
        entered = []
        for index, column in enumerate(self.shape.columns):
            widget = self.table.cellWidget(row, index)
            if isinstance(widget, QComboBox):
                entered.append((column, widget.currentData()))
            elif isinstance(widget, QLineEdit):
                entered.append((column, widget.text().strip() or None))
        return entered

    @staticmethod
    def _typed(column: Column, text: Any) -> Any:
        """A line's text as the column's type; text that is not a number stays text for the check to name."""
        if not isinstance(text, str) or column.type == "string":
            return text
        try:
            return int(text) if column.type == "integer" else float(text)
        except ValueError:
            return text

    def _rows_value(self) -> list[Any]:
        items: list[Any] = []
        for row in range(self.table.rowCount()):
            entered = self._row_texts(row)
            if self.shape is not None and self.shape.plain_values:
                items.append(self._typed(*entered[0]))
            else:
                items.append({c.name: self._typed(c, text) for c, text in entered if text is not None})
        return items

    def _load_rows(self, items: list[Any]) -> None:
        assert self.shape is not None
        self.table.setRowCount(0)
        for item in items:
            self.add_row({"value": item} if self.shape.plain_values else item)
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.remove_button.setEnabled(self.table.rowCount() > 0)

    # ---- JSON switch ---------------------------------------------------------------------------
    @property
    def typing_json(self) -> bool:
        return self.shape is None or self.json_toggle.isChecked()

    @Slot(bool)
    def _json_toggled(self, as_json: bool) -> None:
        self.message.setVisible(False)
        if as_json:
            rows = self._rows_value()
            self.json_edit.setPlainText(json.dumps(rows, ensure_ascii=False) if rows else "")
        else:
            text = self.json_edit.toPlainText().strip()
            try:
                items = json.loads(text) if text else []
            except ValueError:
                items = None
            if self.shape is None or not self.shape.fits(items):
                self._check_json(True)
                self.message.setText("This JSON does not fit in rows, so it stays as text. Fix it or clear "
                                     "it to go back to rows.")
                self.message.setVisible(True)
                return
            self._load_rows(items)
        self._show_mode()

    def _show_mode(self) -> None:
        as_json = self.typing_json
        self.json_edit.setVisible(as_json)
        self.table.setVisible(not as_json)
        self.add_button.setVisible(not as_json)
        self.remove_button.setVisible(not as_json)

    # ---- value ---------------------------------------------------------------------------------
    def value(self) -> Any:
        """The list built from the rows ("" when there are none, so a required list says so), or the JSON
        text as typed (server.console parses it)."""
        if self.typing_json:
            return self.json_edit.toPlainText()
        return self._rows_value() or ""

    def problems(self) -> list[str]:
        """Rows that cannot be sent as they are: a required cell left empty, a number that is not one."""
        if self.typing_json or self.shape is None:
            return []
        found = []
        for row in range(self.table.rowCount()):
            for column, text in self._row_texts(row):
                where = f"row {row + 1}" + ("" if self.shape.plain_values else f", {column.name}")
                if text is None and column.required:
                    found.append(f"{where} is empty")
                elif isinstance(self._typed(column, text), str) and column.type in ("integer", "number"):
                    found.append(f"{where} must be a {'whole ' if column.type == 'integer' else ''}number")
        return found

    def set_value(self, value: Any) -> None:
        """Show a value: as rows when they can hold it, else as JSON text (a string is taken as JSON)."""
        parsed = value
        if isinstance(value, str):
            try:
                parsed = json.loads(value) if value.strip() else []
            except ValueError:
                parsed = None
        self.message.setVisible(False)
        if self.shape is not None and self.shape.fits(parsed):
            self._load_rows(parsed)
            self._check_json(False)
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            self.json_edit.setPlainText(text)
            self._check_json(True)
        self._show_mode()

    def _check_json(self, as_json: bool) -> None:
        """Set the switch without running its conversion (the caller has laid out the value)."""
        self.json_toggle.blockSignals(True)
        self.json_toggle.setChecked(as_json)
        self.json_toggle.blockSignals(False)
