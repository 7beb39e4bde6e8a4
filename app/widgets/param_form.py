"""A form generated from a tool's parameters: the right input for each type, hints from the schema."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtGui import QDoubleValidator, QIntValidator
from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QPlainTextEdit, QWidget

from server.catalog import ParamSpec, Tool

_INT_RANGE = 2**31 - 1


def _hint(spec: ParamSpec) -> str:
    bits = [spec.description] if spec.description else []
    if spec.pattern:
        bits.append(f"format: {spec.pattern}")
    if spec.min is not None or spec.max is not None:
        bits.append(f"range: {spec.min if spec.min is not None else '…'} to "
                    f"{spec.max if spec.max is not None else '…'}")
    if spec.max_length:
        bits.append(f"at most {spec.max_length} characters")
    if not spec.required or spec.default is not None:
        bits.append("optional")
    return "; ".join(bits)


class ParamForm(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_ = QFormLayout(self)
        self.fields: dict[str, QWidget] = {}
        self.tool: Tool | None = None

    def set_tool(self, tool: Tool | None) -> None:
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.fields = {}
        self.tool = tool
        if tool is None:
            return
        if not tool.params:
            self.layout_.addRow(QLabel("This tool takes no parameters."))
        for name, spec in tool.params.items():
            widget = self._widget_for(spec)
            widget.setObjectName(f"param_{name}")
            widget.setToolTip(_hint(spec))
            widget.setAccessibleName(name)
            label = name + ("" if not spec.required or spec.default is not None else " *")
            self.layout_.addRow(label, widget)
            self.fields[name] = widget

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
            editor = QPlainTextEdit()
            editor.setPlaceholderText('JSON, e.g. [{"product_id": "JKT-BLU-M", "quantity": 1}]')
            editor.setFixedHeight(80)
            return editor
        line = QLineEdit()
        if spec.type == "integer":
            line.setValidator(QIntValidator(-_INT_RANGE, _INT_RANGE, line))
        elif spec.type == "number":
            line.setValidator(QDoubleValidator(line))
        elif spec.type == "date":
            line.setPlaceholderText("YYYY-MM-DD")
        if spec.description and spec.type != "date":
            line.setPlaceholderText(spec.description[:60])
        if spec.default is not None:
            line.setText(str(spec.default))
        return line

    def raw_values(self) -> dict[str, Any]:
        """What was typed, as text (or a bool for a required checkbox); server.console types it."""
        values: dict[str, Any] = {}
        for name, widget in self.fields.items():
            if isinstance(widget, QCheckBox):
                values[name] = widget.isChecked()
            elif isinstance(widget, QComboBox):
                values[name] = widget.currentText()
            elif isinstance(widget, QPlainTextEdit):
                values[name] = widget.toPlainText()
            elif isinstance(widget, QLineEdit):
                values[name] = widget.text()
        return values

    def set_value(self, name: str, value: Any) -> None:
        widget = self.fields[name]
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QComboBox):
            widget.setCurrentText(str(value))
        elif isinstance(widget, QPlainTextEdit):
            widget.setPlainText(value if isinstance(value, str) else json.dumps(value))
        elif isinstance(widget, QLineEdit):
            widget.setText(str(value))
