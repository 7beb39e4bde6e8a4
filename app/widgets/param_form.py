"""A form generated from a tool's parameters: the right input for each type, and the whole hint from the
schema written under the field (a placeholder is cut at the field's width, so it only gives an example)."""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QDoubleValidator, QIntValidator, QPalette
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from app.widgets.list_editor import ListEditor, row_shape
from server.catalog import ParamSpec, Tool, described_examples

_INT_RANGE = 2**31 - 1


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def hint(spec: ParamSpec) -> str:
    """What the owner needs to fill a field in, in words: the description, the allowed range and length,
    and whether it may stay empty."""
    bits = [spec.description] if spec.description else []
    if spec.pattern and not spec.description:
        bits.append(f"must have the format {spec.pattern}")
    if spec.min is not None and spec.max is not None:
        bits.append(f"from {_number(spec.min)} to {_number(spec.max)}")
    elif spec.min is not None:
        bits.append(f"at least {_number(spec.min)}")
    elif spec.max is not None:
        bits.append(f"at most {_number(spec.max)}")
    if spec.min_length and spec.min_length > 1:
        bits.append(f"at least {spec.min_length} characters")
    if spec.max_length:
        bits.append(f"at most {spec.max_length} characters")
    if spec.default is not None:
        bits.append(f"optional: left empty, {spec.default} is used")
    elif not spec.required:
        bits.append("optional")
    if spec.type == "date":
        bits.append("a date written YYYY-MM-DD")
    return "; ".join(bits)


def _placeholder(spec: ParamSpec) -> str:
    """A short example that fits in the field; the full hint is in the label below it."""
    if spec.type == "date":
        return "YYYY-MM-DD"
    examples = described_examples(spec.description)
    if examples:
        return f"e.g. {examples[0]}"
    return {"integer": "whole number", "number": "number"}.get(spec.type, "")


class ParamForm(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_ = QFormLayout(self)
        self.layout_.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.fields: dict[str, QWidget] = {}
        self.hints: dict[str, QLabel] = {}
        self.tool: Tool | None = None

    def set_tool(self, tool: Tool | None) -> None:
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.fields = {}
        self.hints = {}
        self.tool = tool
        if tool is None:
            return
        if not tool.params:
            self.layout_.addRow(QLabel("This tool takes no parameters."))
        for name, spec in tool.params.items():
            widget = self._widget_for(spec)
            widget.setObjectName(f"param_{name}")
            text = hint(spec)
            widget.setToolTip(text + (f"\nExact format: {spec.pattern}" if spec.pattern else ""))
            widget.setAccessibleName(name)
            widget.setAccessibleDescription(text)
            label = name + ("" if not spec.required or spec.default is not None else " *")
            self.layout_.addRow(label, self._with_hint(name, widget, text))
            self.fields[name] = widget

    def _with_hint(self, name: str, widget: QWidget, text: str) -> QWidget:
        """The field with its hint under it, word-wrapped so it is read in full at any width."""
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(widget)
        if text:
            note = QLabel(text)
            note.setObjectName(f"hint_{name}")
            note.setWordWrap(True)
            note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
            layout.addWidget(note)
            self.hints[name] = note
        return box

    @staticmethod
    def _widget_for(spec: ParamSpec) -> QWidget:
        if spec.enum:
            combo = QComboBox()
            if not spec.required:
                combo.addItem("")
            combo.addItems([str(v) for v in spec.enum])
            return combo
        if spec.type == "boolean":
            if spec.required and spec.default is None:
                return QCheckBox()
            combo = QComboBox()
            combo.addItems(["", "true", "false"])
            return combo
        if spec.type == "json":
            return ListEditor(row_shape(spec.json_schema))
        line = QLineEdit()
        if spec.type == "integer":
            line.setValidator(QIntValidator(-_INT_RANGE, _INT_RANGE, line))
        elif spec.type == "number":
            line.setValidator(QDoubleValidator(line))
        line.setPlaceholderText(_placeholder(spec))
        if spec.default is not None:
            line.setText(str(spec.default))
        return line

    def raw_values(self) -> dict[str, Any]:
        """What was entered: text (or a bool for a required checkbox, or a list from a row editor);
        server.console types it."""
        values: dict[str, Any] = {}
        for name, widget in self.fields.items():
            if isinstance(widget, QCheckBox):
                values[name] = widget.isChecked()
            elif isinstance(widget, QComboBox):
                values[name] = widget.currentText()
            elif isinstance(widget, ListEditor):
                values[name] = widget.value()
            elif isinstance(widget, QLineEdit):
                values[name] = widget.text()
        return values

    def problems(self) -> list[str]:
        """Rows of a row editor that cannot be sent as entered (the rest is checked by the tool's schema)."""
        return [f"{name} {problem}" for name, widget in self.fields.items() if isinstance(widget, ListEditor)
                for problem in widget.problems()]

    def set_value(self, name: str, value: Any) -> None:
        widget = self.fields[name]
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QComboBox):
            widget.setCurrentText(str(value))
        elif isinstance(widget, ListEditor):
            widget.set_value(value)
        elif isinstance(widget, QLineEdit):
            widget.setText(str(value))
