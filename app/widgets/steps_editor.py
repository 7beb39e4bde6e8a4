"""The steps of a multi-step action (like create_order): a list to add, remove and reorder, and the
selected step's SQL per engine, its refusal condition, message, HTTP status and code.

The editor only maps fields to the step's settings; tools.toml validation (server/catalog_edit.py)
decides what is acceptable when the tool is saved.
"""

from __future__ import annotations

import copy
from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.widgets.fonts import mono
from app.widgets.sql_highlighter import SqlHighlighter

ALL_ENGINES = "all databases"
CONDITIONS = {"never (always continue)": None, "when it returns rows": "fail_if_rows",
              "when it returns no row": "fail_if_none"}
STATUSES = ("409", "400", "404", "422")


def _summary(number: int, step: dict[str, Any]) -> str:
    if step.get("fail_if_rows"):
        rule = f"refuses when rows ({step.get('code', 'rejected')})"
    elif step.get("fail_if_none"):
        rule = f"refuses when no row ({step.get('code', 'rejected')})"
    else:
        rule = "runs"
    sql = step.get("sql")
    text = sql if isinstance(sql, str) else next(iter((sql or {}).values()), "")
    first = " ".join((text or "").split())[:40]
    return f"Step {number}: {rule} · {first}"


class StepsEditor(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._steps: list[dict[str, Any]] = []
        self._loading = False
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.list.setToolTip("The steps run in this order, in one transaction: a refusal undoes them all")
        self.list.currentRowChanged.connect(self._show_step)
        self.add_button = QPushButton("Add step")
        self.add_button.clicked.connect(self.add_step)
        self.remove_button = QPushButton("Remove step")
        self.remove_button.clicked.connect(self.remove_step)
        self.up_button = QPushButton("Move up")
        self.up_button.clicked.connect(lambda: self.move_step(-1))
        self.down_button = QPushButton("Move down")
        self.down_button.clicked.connect(lambda: self.move_step(1))
        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.up_button, self.down_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.engine = QComboBox()
        self.engine.setToolTip("Which database this SQL is for (a step may have one text per database)")
        self.engine.currentIndexChanged.connect(self._show_sql)
        self.sql = QPlainTextEdit()
        self.sql.setFont(mono())
        self.sql.setToolTip("SQL with named parameters like :customer_id; a refusal message can quote the "
                            "columns of the returned row as {column}")
        self.highlighter = SqlHighlighter(self.sql.document())
        self.condition = QComboBox()
        self.condition.addItems(list(CONDITIONS))
        self.condition.setToolTip("When this step refuses the whole action (and undoes the steps before it)")
        self.message = QLineEdit()
        self.message.setToolTip("What the caller is told, e.g. Not enough stock of {product_id}")
        self.status = QComboBox()
        self.status.addItems(list(STATUSES))
        self.status.setToolTip("HTTP status of the refusal: 409 conflict, 400 bad input, 404 not found, 422")
        self.code = QLineEdit()
        self.code.setToolTip("Machine-readable code of the refusal, e.g. insufficient_stock")
        form = QFormLayout()
        form.addRow("SQL for", self.engine)
        form.addRow("SQL", self.sql)
        form.addRow("Refuse", self.condition)
        form.addRow("Message", self.message)
        refusal = QHBoxLayout()
        refusal.addWidget(self.status)
        refusal.addWidget(self.code, 1)
        form.addRow("Status, code", refusal)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addLayout(form)

        self.sql.textChanged.connect(self._sql_edited)
        for signal in (self.condition.currentIndexChanged, self.message.textEdited,
                       self.status.currentIndexChanged, self.code.textEdited):
            signal.connect(self._fields_edited)
        self._enable()

    # ---- in and out ----------------------------------------------------------------------------
    def set_steps(self, steps: list[dict[str, Any]], engine: str) -> None:
        self._steps = copy.deepcopy(steps)
        self._engine = engine
        self._refill(0 if steps else -1)

    def steps(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._steps)

    def current_row(self) -> int:
        return self.list.currentRow()

    def select_step(self, row: int) -> None:
        self.list.setCurrentRow(row)

    # ---- list ----------------------------------------------------------------------------------
    def _refill(self, select: int) -> None:
        self._loading = True
        self.list.clear()
        for number, step in enumerate(self._steps, 1):
            self.list.addItem(_summary(number, step))
        self._loading = False
        self.list.setCurrentRow(select)
        self._show_step(select)
        self._enable()

    def _enable(self) -> None:
        row = self.list.currentRow()
        has = 0 <= row < len(self._steps)
        for widget in (self.remove_button, self.engine, self.sql, self.condition, self.message, self.status,
                       self.code):
            widget.setEnabled(has)
        self.up_button.setEnabled(has and row > 0)
        self.down_button.setEnabled(has and row < len(self._steps) - 1)

    @Slot()
    def add_step(self) -> None:
        row = self.list.currentRow()
        at = row + 1 if row >= 0 else len(self._steps)
        self._steps.insert(at, {"sql": ""})
        self._refill(at)
        self.changed.emit()

    @Slot()
    def remove_step(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self._steps):
            del self._steps[row]
            self._refill(min(row, len(self._steps) - 1))
            self.changed.emit()

    def move_step(self, offset: int) -> None:
        row = self.list.currentRow()
        target = row + offset
        if 0 <= row < len(self._steps) and 0 <= target < len(self._steps):
            self._steps[row], self._steps[target] = self._steps[target], self._steps[row]
            self._refill(target)
            self.changed.emit()

    # ---- one step ------------------------------------------------------------------------------
    @Slot(int)
    def _show_step(self, row: int) -> None:
        if self._loading:
            return
        self._loading = True
        step = self._steps[row] if 0 <= row < len(self._steps) else {}
        sql = step.get("sql", "")
        self.engine.clear()
        if isinstance(sql, dict):
            engines = list(sql)
            self.engine.addItems(engines)
            if self._engine in engines:
                self.engine.setCurrentText(self._engine)
        else:
            self.engine.addItem(ALL_ENGINES)
        condition = next((label for label, key in CONDITIONS.items() if key and step.get(key)),
                         next(iter(CONDITIONS)))
        self.condition.setCurrentText(condition)
        key = CONDITIONS[condition]
        self.message.setText(step.get(key, "") if key else "")
        self.status.setCurrentText(str(step.get("status", 409)))
        self.code.setText(step.get("code", ""))
        self._loading = False
        self._show_sql()
        self._enable()

    @Slot()
    def _show_sql(self, *_args: object) -> None:
        if self._loading:
            return
        row = self.list.currentRow()
        step = self._steps[row] if 0 <= row < len(self._steps) else {}
        sql = step.get("sql", "")
        text = sql.get(self.engine.currentText(), "") if isinstance(sql, dict) else sql
        self._loading = True
        self.sql.setPlainText(text)
        self._loading = False

    @Slot()
    def _sql_edited(self) -> None:
        row = self.list.currentRow()
        if self._loading or not 0 <= row < len(self._steps):
            return
        step = self._steps[row]
        text = self.sql.toPlainText()
        if isinstance(step.get("sql"), dict):
            step["sql"][self.engine.currentText()] = text
        else:
            step["sql"] = text
        self.list.item(row).setText(_summary(row + 1, step))
        self.changed.emit()

    @Slot()
    def _fields_edited(self, *_args: object) -> None:
        row = self.list.currentRow()
        if self._loading or not 0 <= row < len(self._steps):
            return
        step = self._steps[row]
        for key in ("fail_if_rows", "fail_if_none", "status", "code"):
            step.pop(key, None)
        key = CONDITIONS[self.condition.currentText()]
        if key:
            step[key] = self.message.text()
            if int(self.status.currentText()) != 409:  # 409 is the default: keep tools.toml short
                step["status"] = int(self.status.currentText())
            if self.code.text().strip():
                step["code"] = self.code.text().strip()
        self.message.setEnabled(key is not None)
        self.list.item(row).setText(_summary(row + 1, step))
        self.changed.emit()
