"""Test console: call a tool (or raw SQL) through the real HTTP server with a chosen key, see the answer."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.widgets.answer_view import AnswerView
from app.widgets.fonts import mono
from app.widgets.param_form import ParamForm
from server import console, keyadmin
from server.errors import BridgeError
from server.keyadmin import UsableKey

_READY = "Choose a tool, fill in its parameters and press Send."


class ConsolePage(QWidget):
    title = "Test console"
    icon_name = "console"

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.keys: list[UsableKey] = []
        self.last_request: tuple[str, dict[str, Any], str] | None = None
        self._shown_tool: str | None = None
        self._sent = 0  # numbers the requests: an answer to one sent before a tool change is dropped

        self.key_combo = QComboBox()
        self.key_combo.setToolTip("The API key the request is sent with (its scopes apply)")
        self.tabs = QTabWidget()

        tool_tab = QWidget()
        self.tool_combo = QComboBox()
        self.tool_combo.setToolTip("The catalog tool to call")
        self.tool_combo.currentIndexChanged.connect(self._tool_chosen)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.form = ParamForm()
        tool_layout = QVBoxLayout(tool_tab)
        tool_layout.addWidget(self.tool_combo)
        tool_layout.addWidget(self.description)
        tool_layout.addWidget(self.form)
        tool_layout.addStretch(1)
        tool_scroll = QScrollArea()  # hints and a row editor can be taller than the room above the answer
        tool_scroll.setWidgetResizable(True)
        tool_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        tool_scroll.setWidget(tool_tab)
        self.tabs.addTab(tool_scroll, "Tool")

        sql_tab = QWidget()
        self.sql_edit = QPlainTextEdit("SELECT * FROM customers LIMIT 5")
        self.sql_edit.setFont(mono())
        self.sql_edit.setToolTip("Read-only SQL; use $1, $2 … for arguments. Needs a key with the sql scope.")
        self.sql_args = QLineEdit()
        self.sql_args.setPlaceholderText('Arguments as JSON, e.g. [123, "JKT-BLU-M"]')
        sql_layout = QFormLayout(sql_tab)
        sql_layout.addRow("SQL", self.sql_edit)
        sql_layout.addRow("Arguments", self.sql_args)
        self.tabs.addTab(sql_tab, "Raw SQL")

        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.setToolTip("Send the request to this PC's server, exactly as Voka would")
        self.send_button.clicked.connect(self.send)
        self.curl_button = QPushButton("Copy as curl")
        self.curl_button.setToolTip("Copy a curl command that sends the same request (it includes the key)")
        self.curl_button.clicked.connect(self.copy_curl)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("Key:"))
        buttons.addWidget(self.key_combo, 1)
        buttons.addWidget(self.curl_button)
        buttons.addWidget(self.send_button)

        self.status_label = QLabel(_READY)
        self.status_label.setWordWrap(True)
        self.answer = AnswerView()

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.tabs)
        top_layout.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        bottom = QWidget()
        bottom_layout = QVBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        bottom_layout.addWidget(self.status_label)
        bottom_layout.addWidget(self.answer)
        splitter.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        controller.catalogReloaded.connect(self.refresh_tools)
        controller.serverStateChanged.connect(self.refresh_tools)
        controller.serverStateChanged.connect(self._state_changed)
        controller.keysChanged.connect(self.refresh_keys)
        self.refresh_tools()
        self.refresh_keys()

    # ---- choices -------------------------------------------------------------------------------
    @Slot()
    def refresh_tools(self, *_args: object) -> None:
        current = self.tool_combo.currentData()
        self.tool_combo.blockSignals(True)
        self.tool_combo.clear()
        for tool in self.controller.server.bridge.catalog:
            self.tool_combo.addItem(f"{tool.title} ({tool.name}, {tool.kind})", tool.name)
        index = self.tool_combo.findData(current)
        self.tool_combo.setCurrentIndex(max(index, 0))
        self.tool_combo.blockSignals(False)
        self._tool_chosen()

    def select_tool(self, name: str) -> None:
        self.tool_combo.setCurrentIndex(self.tool_combo.findData(name))

    @Slot()
    def _tool_chosen(self, *_args: object) -> None:
        tool = self.controller.server.bridge.catalog.get(self.tool_combo.currentData() or "")
        if self.form.tool is not tool:  # a reload brings new Tool objects: rebuild the form
            same = tool is not None and self.form.tool is not None and self.form.tool.name == tool.name
            typed = self.form.raw_values() if same else {}
            self.form.set_tool(tool)
            for name, value in typed.items():  # a reload of the same tool keeps what was typed
                if name in self.form.fields:
                    self.form.set_value(name, value)
        self.description.setText(tool.description if tool else "No tools in the catalog yet.")
        name = tool.name if tool else None
        if name != self._shown_tool:  # another tool: the last answer belongs to the one before
            self._shown_tool = name
            self._sent += 1
            self.answer.clear()
            self.status_label.setText(_READY)
            self.send_button.setEnabled(True)

    @Slot(str)
    def _state_changed(self, state: str) -> None:
        if state == "serving":  # the first run's key (or MCP_API_KEY) exists from now on
            self.refresh_keys()

    @Slot()
    def refresh_keys(self, *_args: object) -> None:
        self.controller.calls.blocking(keyadmin.usable_keys, self.controller.paths,
                                       self.controller.server.static_keys, on_done=self._set_keys)

    def _set_keys(self, keys: list[UsableKey]) -> None:
        current = self.key_combo.currentData()
        self.keys = keys
        self.key_combo.clear()
        for key in keys:
            self.key_combo.addItem(f"{key.name} ({', '.join(sorted(key.scopes))})", key.key_id)
        if not keys:
            self.key_combo.addItem("No usable key: create one on the Keys page", None)
        index = self.key_combo.findData(current)
        self.key_combo.setCurrentIndex(max(index, 0))

    def select_key(self, key_id: str) -> None:
        self.key_combo.setCurrentIndex(self.key_combo.findData(key_id))

    def _key(self) -> UsableKey | None:
        key_id = self.key_combo.currentData()
        return next((k for k in self.keys if k.key_id == key_id), None)

    # ---- sending -------------------------------------------------------------------------------
    def _build(self) -> tuple[str, dict[str, Any]] | None:
        """Path and body from the open tab, or None after telling the owner what is wrong."""
        try:
            if self.tabs.currentIndex() == 0:
                tool = self.controller.server.bridge.catalog.get(self.tool_combo.currentData() or "")
                if tool is None:
                    raise BridgeError("Choose a tool first.")
                problems = self.form.problems()
                if problems:
                    raise BridgeError("; ".join(problems) + ".")
                return console.tool_request(tool, console.coerce_form(tool, self.form.raw_values()))
            args_text = self.sql_args.text().strip()
            args = json.loads(args_text) if args_text else []
            if not isinstance(args, list):
                raise BridgeError("Arguments must be a JSON list, e.g. [1, \"text\"].")
            return console.sql_request(self.sql_edit.toPlainText(), args)
        except BridgeError as exc:
            self._show_problem(exc.message)
        except ValueError as exc:
            self._show_problem(f"The arguments are not valid JSON: {exc}")
        return None

    def _show_problem(self, message: str) -> None:
        self.status_label.setText(f"Not sent: {message}")
        self.answer.clear()

    @Slot()
    def send(self) -> None:
        built = self._build()
        key = self._key()
        if built is None:
            return
        if key is None:
            self._show_problem("choose an API key (create one on the Keys page).")
            return
        if not self.controller.serving:
            self._show_problem("the server is stopped; start it first.")
            return
        path, body = built
        base = self.controller.local_url
        self.last_request = (path, body, key.secret)
        self.send_button.setEnabled(False)
        self.status_label.setText(f"Sending POST {path}…")
        self._sent += 1
        number = self._sent
        self.answer.clear()
        self.controller.calls.run(console.send(base, path, key.secret, body),
                                  on_done=lambda result: self._answered(number, result),
                                  on_error=lambda exc: self._failed(number, exc))

    def _answered(self, number: int, result: console.ConsoleResult) -> None:
        if number != self._sent:  # sent for the tool before; choosing another one re-enabled Send
            return
        self.send_button.setEnabled(True)
        verdict = "OK" if 200 <= result.status < 300 else "refused" if result.status < 500 else "failed"
        self.status_label.setText(f"HTTP {result.status} ({verdict}) in {result.elapsed_ms:.0f} ms")
        self.answer.show_answer(result.payload, result.text)

    def _failed(self, number: int, exc: BaseException) -> None:
        if number == self._sent:
            self.send_button.setEnabled(True)
            self.status_label.setText(f"The request did not get an answer: {exc or type(exc).__name__}")

    @Slot()
    def copy_curl(self) -> None:
        built = self._build()
        key = self._key()
        if built is None or key is None:
            if key is None:
                self._show_problem("choose an API key first.")
            return
        path, body = built
        command = console.curl_command(self.controller.local_url, path, key.secret, body)
        QGuiApplication.clipboard().setText(command)
        self.status_label.setText("Copied a curl command for this request (it contains the API key).")
