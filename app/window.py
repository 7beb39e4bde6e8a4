"""The main window: a header with the state and Start/Stop, page navigation on the left (with a notice
card over its end)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from PySide6.QtCore import QSize, Qt, Slot
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.icons import app_icon, page_icon, state_icon
from app.widgets.notice_bar import NoticeBar
from server.notices import Notice
from server.status import Status

TITLE = "Voka Bridge"
CloseChoice = Literal["hide", "minimize", "close"]
"""What closing the window does: hide it (the tray keeps the app), minimize it (no tray, the owner chose
to keep serving), or really close it (the app is quitting)."""


class MainWindow(QMainWindow):
    def __init__(self, controller: AppController, pages: list[QWidget], *,
                 on_close: Callable[[], CloseChoice], parent: QWidget | None = None) -> None:
        """`on_close` decides what closing the window means (see CloseChoice)."""
        super().__init__(parent)
        self.controller = controller
        self._on_close = on_close
        self.setWindowTitle(TITLE)
        self.setWindowIcon(app_icon())
        self.resize(1100, 720)

        header = QFrame()
        header.setFrameShape(QFrame.Shape.StyledPanel)
        top = QHBoxLayout(header)
        self.state_icon = QLabel()
        self.state_text = QLabel()
        self.state_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.toggle_button = QPushButton("Start server")
        self.toggle_button.setToolTip("Start or stop serving Voka; calls in progress finish before it stops")
        self.toggle_button.clicked.connect(controller.toggle)
        top.addWidget(self.state_icon)
        top.addWidget(self.state_text, 1)
        top.addWidget(self.toggle_button)

        self.nav = QListWidget()
        self.nav.setIconSize(QSize(20, 20))
        self.nav.setFixedWidth(190)
        self.nav.setAccessibleName("Pages")
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        for page in pages:
            title = page.title  # type: ignore[attr-defined]
            item = QListWidgetItem(page_icon(page.icon_name), title)  # type: ignore[attr-defined]
            self.nav.addItem(item)
            self.stack.addWidget(page)
            self.pages[title] = page
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.nav.setCurrentRow(0)

        body = QHBoxLayout()
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.addWidget(header)
        outer.addLayout(body, 1)
        self.setCentralWidget(central)
        # floats over the empty end of the page list: nothing moves, and no page's button is hidden
        self.notice_bar = NoticeBar(self.nav, central)

        for row in range(min(len(pages), 9)):
            shortcut = QShortcut(QKeySequence(f"Ctrl+{row + 1}"), self)
            shortcut.activated.connect(lambda r=row: self.nav.setCurrentRow(r))

        controller.statusChanged.connect(self.show_status)
        controller.serverStateChanged.connect(lambda _s: self.show_status(controller.status))
        controller.noticeRaised.connect(self.show_notice)
        self.show_status(controller.status)

    def show_page(self, title: str) -> QWidget:
        page = self.pages[title]
        self.nav.setCurrentRow(self.stack.indexOf(page))
        return page

    @Slot(object)
    def show_status(self, status: Status) -> None:
        self.state_icon.setPixmap(state_icon(status.state).pixmap(24, 24))
        where = f"  ·  {self.controller.voka_url}" if self.controller.serving else ""
        self.state_text.setText(f"<b>{status.label}</b>{where}<br><small>{status.reason}</small>")
        running = self.controller.server.state in ("serving", "starting")
        self.toggle_button.setText("Stop server" if running else "Start server")

    @Slot(object)
    def show_notice(self, notice: Notice) -> None:
        self.notice_bar.show_notice(notice)

    def bring_forward(self) -> None:
        self.show()
        state = self.windowState() & ~Qt.WindowState.WindowMinimized
        self.setWindowState(state | Qt.WindowState.WindowActive)
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        choice = self._on_close()
        if choice == "close":
            event.accept()
            return
        event.ignore()
        if choice == "hide":
            self.hide()
        else:
            self.showMinimized()
