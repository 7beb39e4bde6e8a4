"""Tools: the catalog Voka may call. Add, edit, duplicate, delete, test, templates, suggest; Save is live."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.widgets.fonts import mono
from app.widgets.param_form import ParamForm
from app.widgets.sql_highlighter import SqlHighlighter
from app.widgets.steps_editor import StepsEditor
from server import console
from server.catalog_edit import CatalogDocument
from server.config import ConfigError
from server.errors import BridgeError
from server.suggest import Suggestion, suggest
from server.tool_templates import templates
from server.tool_test import SqlProblem, TryResult, check_live_tool, tool_from_spec, try_tool

PARAM_TYPES = ("string", "integer", "number", "boolean", "date", "json")
PARAM_COLUMNS = ("Name", "Type", "Required", "Description", "Allowed form\n(advanced)", "Min", "Max")
PATTERN_COLUMN = 4
PATTERN_HELP = ("Optional: a regular expression the value must match, e.g. ^\\+?[0-9]{7,15}$ for a phone "
                "number. Voka is refused a value of any other form before the database sees it. Leave it "
                "empty to accept any text.")
# What each kind of tool means for the shop; tools.toml keeps "query" and "action".
KINDS = {"query": "Voka can look this up (reads only)",
         "action": "Voka can change this (adds or updates data)"}
WHO_MAY = {"query": "Keys that may look things up, unless a key is kept to other tools (the Keys page).",
           "action": "Only keys that may make changes, unless a key is kept to other tools (the Keys "
                     "page). A key that may only look things up is refused."}


def _number(text: str) -> float | int | None:
    text = text.strip()
    if not text:
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


class SuggestDialog(QDialog):
    def __init__(self, suggestions: list[Suggestion], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Suggested tools")
        self.suggestions = suggestions
        self.list = QListWidget()
        for item_data in suggestions:
            item = QListWidgetItem(f"{item_data.name}  —  {item_data.why}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            item.setToolTip(item_data.spec.get("sql", ""))
            self.list.addItem(item)
        standard = QDialogButtonBox.StandardButton
        buttons = QDialogButtonBox(standard.Ok | standard.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Add ticked tools")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Tick the tools to add. Review each one (and its description, which Voka "
                                "reads) before saving."))
        layout.addWidget(self.list)
        layout.addWidget(buttons)

    def tick(self, name: str) -> None:
        for row, item_data in enumerate(self.suggestions):
            if item_data.name == name:
                self.list.item(row).setCheckState(Qt.CheckState.Checked)

    def chosen(self) -> list[Suggestion]:
        return [s for row, s in enumerate(self.suggestions)
                if self.list.item(row).checkState() == Qt.CheckState.Checked]


class ToolsPage(QWidget):
    title = "Tools"
    icon_name = "tools"

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.doc: CatalogDocument | None = None
        self.current: str | None = None  # the saved name of the tool being edited (None: a new one)
        self.original: dict[str, Any] = {}
        self.dirty = False
        self.suggest_dialog: SuggestDialog | None = None
        self.save_question: QMessageBox | None = None  # open while the owner decides on a broken tool

        self.list = QListWidget()
        self.list.setAccessibleName("Tools")
        self.list.currentItemChanged.connect(self._chosen)
        self.new_button = QPushButton("New")
        new_menu = QMenu(self.new_button)
        new_menu.addAction("Blank query", lambda: self.new_tool("query"))
        new_menu.addAction("Blank action", lambda: self.new_tool("action"))
        new_menu.addSeparator()
        for template in templates():
            new_menu.addAction(f"From template: {template.title}",
                               lambda t=template: self.new_from_spec(t.name, t.spec))
        self.new_button.setMenu(new_menu)
        self.duplicate_button = QPushButton("Duplicate")
        self.duplicate_button.clicked.connect(self.duplicate)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete)
        self.suggest_button = QPushButton("Suggest from database…")
        self.suggest_button.setToolTip("Propose lookups and inserts from your database's tables")
        self.suggest_button.clicked.connect(self.open_suggestions)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.list, 1)
        row = QHBoxLayout()
        for button in (self.new_button, self.duplicate_button, self.delete_button):
            row.addWidget(button)
        left_layout.addLayout(row)
        left_layout.addWidget(self.suggest_button)

        self.name = QLineEdit()
        self.name.setToolTip("Lowercase letters, digits and _, e.g. find_customer_by_phone")
        self.kind = QComboBox()
        for kind, label in KINDS.items():
            self.kind.addItem(label, kind)
        self.kind.setToolTip("A look-up only reads your data; a change may add or update it")
        self.who_may = QLabel()
        self.who_may.setWordWrap(True)
        self.kind.currentIndexChanged.connect(self._show_who_may)
        self.title_edit = QLineEdit()
        self.description = QPlainTextEdit()
        self.description.setFixedHeight(60)
        self.description.setToolTip("What Voka reads to decide when to call this tool: write it for a person")
        self.sql = QPlainTextEdit()
        self.sql.setFont(mono())
        self.sql.setToolTip("SQL with named parameters like :phone (always bound, never pasted into the "
                            "text)")
        self.highlighter = SqlHighlighter(self.sql.document())
        self.steps_note = QLabel()
        self.steps_note.setWordWrap(True)
        self.steps_editor = StepsEditor()
        self.steps_editor.changed.connect(self._mark_dirty)
        self.params = QTableWidget(0, len(PARAM_COLUMNS))
        self.params.setHorizontalHeaderLabels(PARAM_COLUMNS)
        self.params.horizontalHeaderItem(PATTERN_COLUMN).setToolTip(PATTERN_HELP)
        self.params.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.params.verticalHeader().setVisible(False)
        self.params.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.params.setMinimumHeight(110)
        add_param = QPushButton("Add parameter")
        add_param.clicked.connect(lambda: self.add_param_row("", {"type": "string"}))
        remove_param = QPushButton("Remove parameter")
        remove_param.clicked.connect(self._remove_param)
        param_buttons = QHBoxLayout()
        param_buttons.addWidget(add_param)
        param_buttons.addWidget(remove_param)
        param_buttons.addStretch(1)
        self.max_rows = QSpinBox()
        self.max_rows.setRange(0, 1_000_000)
        self.max_rows.setSpecialValueText("server limit")
        self.cache = QSpinBox()
        self.cache.setRange(0, 86_400)
        self.cache.setSuffix(" s")
        self.cache.setSpecialValueText("no caching")
        self.cache.setToolTip("Answer repeated identical queries from memory for this long")

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("What it does", self.kind)
        form.addRow("Which keys may use it", self.who_may)
        form.addRow("Title", self.title_edit)
        form.addRow("Description", self.description)
        form.addRow("SQL", self.sql)
        self.form_sql_label = form.labelForField(self.sql)
        form.addRow("", self.steps_note)
        form.addRow("Steps", self.steps_editor)
        self.steps_label = form.labelForField(self.steps_editor)
        form.addRow("Parameters", self.params)
        form.addRow("", param_buttons)
        limits = QHBoxLayout()
        limits.addWidget(QLabel("Max rows"))
        limits.addWidget(self.max_rows)
        limits.addWidget(QLabel("Cache"))
        limits.addWidget(self.cache)
        limits.addStretch(1)
        form.addRow("Limits", limits)

        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Check the tool, write tools.toml and reload the running server")
        self.save_button.clicked.connect(self.save)
        self.revert_button = QPushButton("Revert")
        self.revert_button.clicked.connect(lambda: self._load_tool(self.current))
        self.test_button = QPushButton("Test…")
        self.test_button.setToolTip("Run the tool as edited against the database (actions are rolled back)")
        self.test_button.clicked.connect(self.prepare_test)
        actions = QHBoxLayout()
        actions.addWidget(self.test_button)
        actions.addStretch(1)
        actions.addWidget(self.revert_button)
        actions.addWidget(self.save_button)
        self.message = QLabel()
        self.message.setWordWrap(True)

        self.test_form = ParamForm()
        self.run_test_button = QPushButton("Run test")
        self.run_test_button.clicked.connect(self.run_test)
        self.test_output = QPlainTextEdit()
        self.test_output.setReadOnly(True)
        self.test_output.setFont(mono())
        self.test_output.setPlaceholderText("Test results appear here.")
        self.test_box = QWidget()
        test_layout = QVBoxLayout(self.test_box)
        test_layout.addWidget(QLabel("<b>Test</b> (actions run in a transaction that is rolled back)"))
        test_layout.addWidget(self.test_form)
        test_layout.addWidget(self.run_test_button)
        test_layout.addWidget(self.test_output)
        self.test_box.setVisible(False)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addLayout(form)
        right_layout.addLayout(actions)
        right_layout.addWidget(self.message)
        right_layout.addWidget(self.test_box)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setSizes([240, 760])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        for signal in (self.name.textEdited, self.title_edit.textEdited, self.description.textChanged,
                       self.sql.textChanged, self.kind.currentIndexChanged, self.params.itemChanged,
                       self.max_rows.valueChanged, self.cache.valueChanged):
            signal.connect(self._mark_dirty)
        self.reload_document()

    # ---- overridable question (tests answer it without a modal loop) ----------------------------
    def confirm(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.StandardButton.Yes

    # ---- document ------------------------------------------------------------------------------
    def reload_document(self, select: str | None = None) -> None:
        def loaded(doc: CatalogDocument) -> None:
            self.doc = doc
            self._fill_list(select or self.current)

        self.controller.calls.blocking(CatalogDocument.load, self.controller.paths.tools_file,
                                       on_done=loaded, on_error=self._problem)

    def _fill_list(self, select: str | None) -> None:
        assert self.doc is not None
        self.list.blockSignals(True)
        self.list.clear()
        for name in self.doc.names():
            self.list.addItem(name)
        self.list.blockSignals(False)
        names = self.doc.names()
        target = select if select in names else (names[0] if names else None)
        if target is None:
            self.new_tool("query")
            return
        self.list.blockSignals(True)
        self.list.setCurrentRow(names.index(target))
        self.list.blockSignals(False)
        self._load_tool(target)

    def select_tool(self, name: str) -> None:
        assert self.doc is not None
        self.list.setCurrentRow(self.doc.names().index(name))

    def _engine(self) -> str:
        url = self.controller.server.bridge.database_url
        return "sqlite" if url.startswith("sqlite:") else "postgresql"

    @Slot()
    def _chosen(self, current: QListWidgetItem | None, previous: QListWidgetItem | None) -> None:
        if current is None or (current.text() == self.current and not self.dirty):
            return
        if self.dirty and not self.confirm("Unsaved changes", "Discard the changes to this tool?"):
            self.list.blockSignals(True)
            self.list.setCurrentItem(previous)
            self.list.blockSignals(False)
            return
        self._load_tool(current.text())

    def _load_tool(self, name: str | None) -> None:
        if name is None or self.doc is None or name not in self.doc.names():
            self.new_tool("query")
            return
        self._edit(name, self.doc.spec(name), saved=True)

    def _edit(self, name: str, spec: dict[str, Any], *, saved: bool) -> None:
        self.current = name if saved else None
        self.original = spec
        widgets = (self.name, self.title_edit, self.description, self.sql, self.kind, self.params,
                   self.max_rows, self.cache)
        for widget in widgets:
            widget.blockSignals(True)
        self.name.setText(name)
        self.kind.setCurrentIndex(max(0, self.kind.findData(spec.get("kind", "query"))))
        self.title_edit.setText(spec.get("title", ""))
        self.description.setPlainText(spec.get("description", ""))
        sql = spec.get("sql")
        steps = spec.get("steps") or []
        if isinstance(sql, dict):
            sql = sql.get(self._engine()) or sql.get("default", "")
        self.sql.setPlainText(sql or "")
        self.sql.setVisible(not steps)
        self.form_sql_label.setVisible(not steps)
        self.steps_note.setText(f"This action runs {len(steps)} steps in one transaction: if a step refuses, "
                                "none of them changes anything." if steps else "")
        self.steps_note.setVisible(bool(steps))
        self.steps_editor.set_steps(steps, self._engine())
        self.steps_editor.setVisible(bool(steps))
        self.steps_label.setVisible(bool(steps))
        self.params.setRowCount(0)
        for pname, pspec in (spec.get("params") or {}).items():
            self.add_param_row(pname, pspec)
        self.max_rows.setValue(int(spec.get("max_rows") or 0))
        self.cache.setValue(int(spec.get("cache_ttl_seconds") or 0))
        for widget in widgets:
            widget.blockSignals(False)
        self._show_who_may()
        self.dirty = not saved
        self.message.setText("" if saved else "New tool: fill it in, then Save.")
        self.test_box.setVisible(False)
        self.duplicate_button.setEnabled(saved)
        self.delete_button.setEnabled(saved)

    def add_param_row(self, name: str, spec: dict[str, Any]) -> None:
        row = self.params.rowCount()
        self.params.insertRow(row)
        self.params.setItem(row, 0, QTableWidgetItem(name))
        kind = QComboBox()
        kind.addItems(PARAM_TYPES)
        kind.setCurrentText(spec.get("type", "string"))
        kind.currentIndexChanged.connect(self._mark_dirty)
        self.params.setCellWidget(row, 1, kind)
        required = QTableWidgetItem()
        required.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
        checked = spec.get("required", True)
        required.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.params.setItem(row, 2, required)
        for column, key in ((3, "description"), (PATTERN_COLUMN, "pattern"), (5, "min"), (6, "max")):
            value = spec.get(key)
            self.params.setItem(row, column, QTableWidgetItem("" if value is None else str(value)))
        self.params.item(row, 0).setData(Qt.ItemDataRole.UserRole, spec)
        self._mark_dirty()

    def _remove_param(self) -> None:
        rows = sorted({index.row() for index in self.params.selectedIndexes()}, reverse=True)
        for row in rows:
            self.params.removeRow(row)
        if rows:
            self._mark_dirty()

    @Slot()
    def _mark_dirty(self, *_args: object) -> None:
        self.dirty = True

    @Slot()
    def _show_who_may(self, *_args: object) -> None:
        self.who_may.setText(WHO_MAY[self.kind.currentData() or "query"])

    def collect(self) -> tuple[str, dict[str, Any]]:
        """The edited tool as a spec (values the form does not show are kept from the original)."""
        spec = {k: v for k, v in self.original.items() if k not in ("params",)}
        spec["kind"] = self.kind.currentData()
        spec["title"] = self.title_edit.text().strip()
        spec["description"] = self.description.toPlainText().strip()
        if spec.get("steps"):
            spec["steps"] = self.steps_editor.steps()
            if not spec["steps"]:
                raise ConfigError("An action with steps needs at least one step (or delete the tool).")
        else:
            text = self.sql.toPlainText().strip()
            original_sql = self.original.get("sql")
            if isinstance(original_sql, dict):
                spec["sql"] = {**original_sql, self._engine(): text}
            else:
                spec["sql"] = text
        params: dict[str, Any] = {}
        for row in range(self.params.rowCount()):
            pname = (self.params.item(row, 0).text() or "").strip()
            if not pname:
                continue
            base = dict(self.params.item(row, 0).data(Qt.ItemDataRole.UserRole) or {})
            kind = self.params.cellWidget(row, 1)
            assert isinstance(kind, QComboBox)
            base["type"] = kind.currentText()
            required = self.params.item(row, 2).checkState() == Qt.CheckState.Checked
            if required:
                base.pop("required", None)
            else:
                base["required"] = False
            for column, key in ((3, "description"), (PATTERN_COLUMN, "pattern")):
                text = self.params.item(row, column).text().strip()
                if text:
                    base[key] = text
                else:
                    base.pop(key, None)
            for column, key in ((5, "min"), (6, "max")):
                try:
                    value = _number(self.params.item(row, column).text())
                except ValueError:
                    raise ConfigError(f"Parameter {pname}: {key} must be a number.") from None
                if value is None:
                    base.pop(key, None)
                else:
                    base[key] = value
            params[pname] = base
        spec["params"] = params
        spec["max_rows"] = self.max_rows.value() or None
        spec["cache_ttl_seconds"] = self.cache.value() or None
        if spec["kind"] == "action":
            spec.pop("cache_ttl_seconds", None)
        return self.name.text().strip(), {k: v for k, v in spec.items() if v is not None}

    # ---- list actions --------------------------------------------------------------------------
    def new_tool(self, kind: str) -> None:
        assert self.doc is not None or kind
        base = self.doc.free_name(f"new_{kind}") if self.doc else f"new_{kind}"
        self.list.clearSelection()
        self._edit(base, {"kind": kind, "description": "", "sql": ""}, saved=False)

    def new_from_spec(self, name: str, spec: dict[str, Any]) -> None:
        free = self.doc.free_name(name) if self.doc else name
        self.list.clearSelection()
        self._edit(free, json.loads(json.dumps(spec)), saved=False)

    @Slot()
    def duplicate(self) -> None:
        if self.current is None or self.doc is None:
            return
        self.new_from_spec(self.doc.free_name(f"{self.current}_copy"), self.doc.spec(self.current))

    @Slot()
    def delete(self) -> None:
        name = self.current
        if name is None or self.doc is None:
            return
        if not self.confirm("Delete tool", f"Delete {name}? Voka can no longer call it once you confirm."):
            return
        doc = self.doc
        self._write(lambda: doc.without_tool(name), f"Deleted {name}.", select=None)

    @Slot()
    def save(self) -> None:
        """Check the tool's SQL on the live database first (prepared, never run); a tool the database
        does not accept is saved only when the owner says so."""
        if self.doc is None:
            return
        try:
            name, spec = self.collect()
        except ConfigError as exc:
            self._problem(exc)
            return
        doc, replacing = self.doc, self.current

        def write(done_text: str = f"Saved {name}; Voka sees it now.") -> None:
            self._write(lambda: doc.with_tool(name, spec, replacing=replacing), done_text, select=name)

        try:
            tool = tool_from_spec(name, spec)
        except ConfigError:
            write()  # the catalog's own validation names what is wrong, and nothing is written
            return
        if not self.controller.serving:
            write(f"Saved {name}. Its SQL was not checked against your database: the server is stopped.")
            return

        def checked(problems: list[SqlProblem]) -> None:
            self.save_button.setEnabled(True)
            if not problems:
                write()
                return
            said = "\n".join(str(problem) for problem in problems)
            if problems[0].step is not None and self.name.text().strip() == name:
                self.steps_editor.select_step(problems[0].step - 1)  # show the step it refuses
            self.message.setText(f"The database does not accept the SQL of {name}: {said}")
            self._ask_save_anyway(name, said, lambda: write(
                f"Saved {name}; Voka sees it now, but will get an error when it uses it: the database "
                f"does not accept its SQL ({said})."))

        def not_checked(exc: BaseException) -> None:
            self.save_button.setEnabled(True)
            why = exc.detail if isinstance(exc, BridgeError) else str(exc)
            write(f"Saved {name}; Voka sees it now. Its SQL could not be checked: {why}")

        self.save_button.setEnabled(False)
        self.message.setText(f"Checking the SQL of {name} against your database (nothing is run)…")
        self.controller.calls.run(check_live_tool(self.controller.server.bridge, tool),
                                  on_done=checked, on_error=not_checked)

    def _ask_save_anyway(self, name: str, said: str, save: Callable[[], None]) -> None:
        """The database's own words, then a question whose safe answer (keep editing) is the default."""
        buttons = QMessageBox.StandardButton
        box = QMessageBox(QMessageBox.Icon.Warning, "The database does not accept this tool",
                          f"The database does not accept the SQL of {name}:\n\n{said}",
                          buttons.Yes | buttons.No, self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setInformativeText("Save anyway? Voka will get an error when it uses it.")
        box.button(buttons.Yes).setText("Save anyway")
        box.button(buttons.No).setText("Don't save")
        box.setDefaultButton(buttons.No)
        box.setEscapeButton(buttons.No)

        def answered() -> None:
            self.save_question = None
            anyway = box.clickedButton() is box.button(buttons.Yes)
            box.deleteLater()
            if anyway:
                save()
            else:
                self.message.setText(f"Not saved: the database does not accept the SQL of {name}: {said}")

        box.finished.connect(answered)
        self.save_question = box
        box.open()

    def _write(self, change: Any, done_text: str, *, select: str | None) -> None:
        """Validate and write on a worker; then reload the running server's catalog."""
        self.save_button.setEnabled(False)

        def work() -> CatalogDocument:
            updated = change()
            updated.save()
            return updated

        def written(updated: CatalogDocument) -> None:
            self.save_button.setEnabled(True)
            self.doc = updated
            self.dirty = False
            self.current = None
            self._fill_list(select)
            self.message.setText(done_text)
            if self.controller.serving:
                self.controller.calls.run(self.controller.server.bridge.reload_catalog(),
                                          on_error=self._problem)

        def failed(exc: BaseException) -> None:
            self.save_button.setEnabled(True)
            self._problem(exc)

        self.controller.calls.blocking(work, on_done=written, on_error=failed)

    def _problem(self, exc: BaseException) -> None:
        text = exc.detail if isinstance(exc, BridgeError) else str(exc)
        self.message.setText(f"Not saved: {text}" if isinstance(exc, ConfigError) else text)

    # ---- suggestions ---------------------------------------------------------------------------
    @Slot()
    def open_suggestions(self) -> None:
        if not self.controller.serving:
            self.message.setText("Start the server first: suggestions read your database's tables.")
            return
        bridge = self.controller.server.bridge
        existing = set(self.doc.names()) if self.doc else set()

        async def read() -> list[Suggestion]:
            db = await bridge.database()
            return suggest(await db.schema(), existing)

        self.message.setText("Reading the database's tables…")
        self.controller.calls.run(read(), on_done=self._show_suggestions, on_error=self._problem)

    def _show_suggestions(self, found: list[Suggestion]) -> None:
        if not found:
            self.message.setText("No new suggestions: your tables are covered.")
            return
        self.message.setText(f"{len(found)} suggestion(s).")
        self.suggest_dialog = SuggestDialog(found, self)
        self.suggest_dialog.accepted.connect(self._add_suggestions)
        self.suggest_dialog.open()

    def _add_suggestions(self) -> None:
        assert self.suggest_dialog is not None and self.doc is not None
        chosen = self.suggest_dialog.chosen()
        if not chosen:
            return
        doc = self.doc

        def change() -> CatalogDocument:
            updated = doc
            for item in chosen:
                updated = updated.with_tool(item.name, item.spec)
            return updated

        self._write(change, f"Added {', '.join(s.name for s in chosen)}.", select=chosen[0].name)

    # ---- test ----------------------------------------------------------------------------------
    @Slot()
    def prepare_test(self) -> None:
        try:
            name, spec = self.collect()
            tool = tool_from_spec(name, spec)
        except ConfigError as exc:
            self._problem(exc)
            return
        self.test_form.set_tool(tool)
        self.test_output.clear()
        self.test_box.setVisible(True)

    @Slot()
    def run_test(self) -> None:
        tool = self.test_form.tool
        if tool is None:
            return
        if not self.controller.serving:
            self.test_output.setPlainText("Start the server first: the test runs against your database.")
            return
        try:
            args = console.coerce_form(tool, self.test_form.raw_values())
        except BridgeError as exc:
            self.test_output.setPlainText(exc.message)
            return
        self.test_output.setPlainText("Running…")
        self.controller.calls.run(try_tool(self.controller.server.bridge, tool, args),
                                  on_done=self._tested, on_error=self._test_failed)

    def _tested(self, result: TryResult) -> None:
        note = " (rolled back: nothing was changed)" if result.rolled_back else ""
        header = f"{result.rows} row(s) in {result.elapsed_ms:.0f} ms{note}"
        self.test_output.setPlainText(header + "\n\n" + json.dumps(result.data, indent=2, default=str,
                                                                  ensure_ascii=False))

    def _test_failed(self, exc: BaseException) -> None:
        self.test_output.setPlainText(exc.detail if isinstance(exc, BridgeError) else f"Failed: {exc}")
