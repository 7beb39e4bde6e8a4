"""SQL syntax highlighting for the tool editor: keywords, strings, numbers, comments and :parameters."""

from __future__ import annotations

import re

from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument

KEYWORDS = ("select", "from", "where", "and", "or", "not", "in", "is", "null", "like", "between",
            "join", "left", "right", "inner", "outer", "on", "as", "group", "by", "order", "having",
            "limit", "offset", "insert", "into", "values", "update", "set", "delete", "returning",
            "with", "case", "when", "then", "else", "end", "distinct", "union", "all", "exists", "cast",
            "coalesce", "count", "sum", "avg", "min", "max", "asc", "desc", "begin", "commit",
            "rollback", "create", "table", "primary", "key", "references", "default", "true", "false")


def _format(colour: str, *, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setForeground(QColor(colour))
    if bold:
        fmt.setFontWeight(QFont.Weight.Bold)
    fmt.setFontItalic(italic)
    return fmt


class SqlHighlighter(QSyntaxHighlighter):
    RULES = [
        (re.compile(r"\b(" + "|".join(KEYWORDS) + r")\b", re.IGNORECASE), _format("#2a5bd7", bold=True)),
        (re.compile(r"\b\d+(\.\d+)?\b"), _format("#b45309")),
        (re.compile(r"(?<!:):[A-Za-z_][A-Za-z0-9_]*"), _format("#7c3aed", bold=True)),
        (re.compile(r"\$\d+"), _format("#7c3aed", bold=True)),
        (re.compile(r"'(?:[^']|'')*'"), _format("#15803d")),
        (re.compile(r"--[^\n]*"), _format("#6b7280", italic=True)),
    ]

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)

    def highlightBlock(self, text: str) -> None:
        for pattern, fmt in self.RULES:
            for match in pattern.finditer(text):
                self.setFormat(match.start(), match.end() - match.start(), fmt)
