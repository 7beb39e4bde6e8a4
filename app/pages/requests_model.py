"""The live request table: newest first, capped in memory, filled in batches; a filter on top.

One model reset-free insert per batch (not per request), a fixed cap with the oldest rows dropped, and a
filter that only looks at new rows as they arrive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor

from server.events import RequestFinished

DEFAULT_CAP = 5000
COLUMNS = ("Time", "Key", "Client", "Route", "Tool", "Status", "Duration", "Rows")
Index = QModelIndex | QPersistentModelIndex
_DISPLAY, _TOOLTIP = Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole
_FOREGROUND, _ALIGN = Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.TextAlignmentRole
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_REFUSED, _FAILED = QBrush(QColor("#b7791f")), QBrush(QColor("#d33a2c"))
STATUS_FILTERS: dict[str, tuple[int, int] | None] = {
    "All statuses": None, "Successful (2xx)": (200, 399), "Refused (4xx)": (400, 499),
    "Failed (5xx)": (500, 599)}


def _signature(event: RequestFinished) -> tuple[Any, ...]:
    return (event.ts, event.client, event.route, event.status, event.tool)


def _cells(event: RequestFinished) -> tuple[str, ...]:
    return (event.ts[11:23] if len(event.ts) > 19 else event.ts, event.key_name or "—", event.client,
            f"{event.method} {event.route}", event.tool or "", str(event.status),
            f"{event.duration_ms:.1f} ms", "" if event.rows is None else str(event.rows))


class RequestsModel(QAbstractTableModel):
    """Rows are (audit id or None, event, display texts); kept oldest first, shown newest first."""

    def __init__(self, cap: int = DEFAULT_CAP, parent: Any = None) -> None:
        super().__init__(parent)
        self.cap = cap
        self._items: list[tuple[int | None, RequestFinished, tuple[str, ...]]] = []
        self.paused = False
        self._held: deque[RequestFinished] = deque(maxlen=cap)
        self.total_seen = 0
        self.browsing_history = False

    # ---- Qt model ------------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = _DISPLAY) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == _DISPLAY:
            return COLUMNS[section]
        return None

    def event_at(self, row: int) -> RequestFinished:
        return self._items[len(self._items) - 1 - row][1]

    def data(self, index: Index, role: int = _DISPLAY) -> Any:
        if role == _DISPLAY:
            return self._items[len(self._items) - 1 - index.row()][2][index.column()]
        column = index.column()
        if role == _FOREGROUND and column == 5:
            status = self.event_at(index.row()).status
            return _FAILED if status >= 500 else _REFUSED if status >= 400 else None
        if role == _ALIGN and column >= 5:
            return _RIGHT
        if role == _TOOLTIP:
            event = self.event_at(index.row())
            if column == 5:
                return "  ".join(t for t in (event.error_code, event.detail) if t) or None
            return event.ts if column == 0 else None
        return None

    # ---- feeding -------------------------------------------------------------------------------
    def add_live(self, events: Sequence[RequestFinished]) -> None:
        self.total_seen += len(events)
        if self.paused:
            self._held.extend(events)
            return
        self._insert_newest(events)

    def _insert_newest(self, events: Sequence[RequestFinished]) -> None:
        events = list(events)[-self.cap:]
        if not events:
            return
        self._trim(len(events))
        self.beginInsertRows(QModelIndex(), 0, len(events) - 1)
        self._items.extend((None, e, _cells(e)) for e in events)
        self.endInsertRows()

    def _trim(self, incoming: int = 0) -> None:
        excess = len(self._items) + incoming - self.cap
        if excess > 0 and not self.browsing_history:
            count = len(self._items)
            excess = min(excess, count)
            self.beginRemoveRows(QModelIndex(), count - excess, count - 1)
            del self._items[:excess]
            self.endRemoveRows()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self.browsing_history = False
            self._trim()
            held = list(self._held)
            self._held.clear()
            self._insert_newest(held)

    @property
    def held(self) -> int:
        return len(self._held)

    def oldest_audit_id(self) -> int | None:
        if self._items and self._items[0][0] is not None:
            return self._items[0][0]
        return None

    def add_history(self, page: Sequence[tuple[int, RequestFinished]], *, older: bool) -> int:
        """Add a page of audit records (newest first) below what is shown; skips rows already shown."""
        if older:
            self.browsing_history = True
        shown = {_signature(e) for _, e, _ in self._items}
        fresh = [(audit_id, e) for audit_id, e in page if _signature(e) not in shown]
        if not older:
            fresh = fresh[: max(0, self.cap - len(self._items))]
        if not fresh:
            return 0
        count = len(self._items)
        self.beginInsertRows(QModelIndex(), count, count + len(fresh) - 1)
        self._items[0:0] = [(audit_id, e, _cells(e)) for audit_id, e in reversed(fresh)]
        self.endInsertRows()
        return len(fresh)


class RequestsFilter(QSortFilterProxyModel):
    """Status class, tool, key and free text; Qt asks only about rows as they arrive."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.status_range: tuple[int, int] | None = None
        self.tool = ""
        self.key = ""
        self.text = ""

    def apply(self, *, status: tuple[int, int] | None = None, tool: str = "", key: str = "",
              text: str = "") -> None:
        self.beginFilterChange()
        self.status_range, self.tool, self.key, self.text = status, tool, key, text.strip().lower()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        if not (self.status_range or self.tool or self.key or self.text):
            return True
        model = self.sourceModel()
        assert isinstance(model, RequestsModel)
        event = model.event_at(source_row)
        if self.status_range and not self.status_range[0] <= event.status <= self.status_range[1]:
            return False
        if self.tool and event.tool != self.tool:
            return False
        if self.key and event.key_name != self.key:
            return False
        if self.text:
            haystack = " ".join(str(v) for v in (event.client, event.route, event.tool, event.key_name,
                                                 event.error_code, event.detail, event.status) if v).lower()
            return self.text in haystack
        return True

    def visible_rows(self) -> list[int]:
        """Source rows currently shown, top to bottom."""
        return [self.mapToSource(self.index(row, 0)).row() for row in range(self.rowCount())]
