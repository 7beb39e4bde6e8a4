"""A file's path with a Browse… button beside it: owners pick files, they should not have to type paths."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

PEM_FILES = "PEM files (*.pem *.crt *.cer *.key);;All files (*)"


class FileField(QWidget):
    textChanged = Signal(str)

    def __init__(self, caption: str, file_filter: str = PEM_FILES, placeholder: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = caption
        self.file_filter = file_filter
        self.field = QLineEdit()
        self.field.setPlaceholderText(placeholder)
        self.field.setAccessibleName(caption)
        self.field.textChanged.connect(self.textChanged)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.setToolTip(f"Choose the {caption.lower()} file")
        self.browse_button.clicked.connect(self.browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.field, 1)
        row.addWidget(self.browse_button)

    # The QLineEdit calls a form makes, so the field stands in for one.
    def text(self) -> str:
        return self.field.text()

    def setText(self, text: str) -> None:
        self.field.setText(text)

    def setPlaceholderText(self, text: str) -> None:
        self.field.setPlaceholderText(text)

    def placeholderText(self) -> str:
        return self.field.placeholderText()

    @Slot()
    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self.caption, self.field.text(), self.file_filter)
        if path:
            self.field.setText(path)
