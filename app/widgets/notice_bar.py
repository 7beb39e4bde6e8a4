"""The window's notice: a card floating over the bottom of the page list, with a close button.

It floats instead of taking a row of the layout, so a notice arriving never moves what the owner is
about to click; and it floats over the empty end of the page list, not over a page, whose Save or Send
button it would hide. Closing it hides that notice until something new is told (a different notice).
"""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from server.notices import Notice

MARGIN = 6


class NoticeBar(QFrame):
    def __init__(self, over: QWidget, parent: QWidget) -> None:
        """`over` is the area the card floats over (its bottom, as wide as it); `parent` must contain it."""
        super().__init__(parent)
        self.over = over
        self.notice: Notice | None = None
        self.dismissed: Notice | None = None
        self.setObjectName("noticeBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setAccessibleName("Notice")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton()
        self.close_button.setText("×")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Close this notice")
        self.close_button.setAccessibleName("Close notice")
        self.close_button.clicked.connect(self.dismiss)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 4, 6)
        row.addWidget(self.label, 1)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.setVisible(False)
        over.installEventFilter(self)

    def text(self) -> str:
        return self.label.text()

    @Slot(object)
    def show_notice(self, notice: Notice) -> None:
        """Show the newest notice; one the owner closed stays closed until another notice came."""
        if notice == self.dismissed:
            return
        self.dismissed = None
        self.notice = notice
        self.label.setText(f"<b>{html.escape(notice.title)}</b>: {html.escape(notice.text)}")
        colour = "#d33a2c" if notice.critical else "#2f7bd6"
        self.setStyleSheet(f"#noticeBar {{ border: 1px solid {colour}; border-left: 4px solid {colour}; "
                           "border-radius: 4px; }")
        self.setVisible(True)
        self.place()
        self.raise_()

    @Slot()
    def dismiss(self) -> None:
        self.dismissed = self.notice
        self.setVisible(False)

    def place(self) -> None:
        """Bottom of `over`, as wide as it, as tall as the text needs."""
        corner = self.over.mapTo(self.parentWidget(), QPoint(self.over.width(), self.over.height()))
        width = max(120, self.over.width() - 2 * MARGIN)
        height = max(self.minimumSizeHint().height(), self.heightForWidth(width))
        self.setGeometry(corner.x() - width - MARGIN, corner.y() - height - MARGIN, width, height)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        moved = event.type() in (QEvent.Type.Resize, QEvent.Type.Move)
        if watched is self.over and moved and self.isVisible():
            self.place()
        return False
