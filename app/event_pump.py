"""Server → GUI events, batched: the server thread only appends to a deque; the GUI thread drains it.

The first event after a drain emits one queued signal to a slot in the GUI thread, which arms a
single-shot timer; when it fires, everything collected so far is delivered as one list. So 2,000
requests/s cost the window a handful of slot calls per second, never one per request.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

MAX_QUEUED = 50_000
MAX_BATCH = 200  # events handed to the window per slot call: a burst is spread over short steps
CATCH_UP_MS = 15  # pause between those steps, so the window paints and answers input in between


class EventPump(QObject):
    delivered = Signal(list)
    _wake = Signal()

    def __init__(self, interval_ms: int = 150, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue: deque[Any] = deque(maxlen=MAX_QUEUED)
        self._lock = threading.Lock()
        self._armed = False
        self.dropped = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._drain)
        self._catch_up = QTimer(self)
        self._catch_up.setSingleShot(True)
        self._catch_up.setInterval(CATCH_UP_MS)
        self._catch_up.timeout.connect(self._drain)
        self._wake.connect(self._arm, Qt.ConnectionType.QueuedConnection)

    def push(self, event: Any) -> None:
        """Called on the server thread for every event; must stay cheap."""
        if len(self._queue) == MAX_QUEUED:
            self.dropped += 1  # the window fell behind; the audit log still has every request
        self._queue.append(event)
        with self._lock:
            if self._armed:
                return
            self._armed = True
        self._wake.emit()

    @Slot()
    def _arm(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def drain_now(self) -> None:
        """Deliver everything queued at once, without waiting for the timers (shutdown, tests)."""
        self._timer.stop()
        self._catch_up.stop()
        self._drain()
        while self._queue:
            self._drain()
        self._catch_up.stop()

    @Slot()
    def _drain(self) -> None:
        with self._lock:
            self._armed = False
        batch: list[Any] = []
        queue = self._queue
        while queue and len(batch) < MAX_BATCH:
            batch.append(queue.popleft())
        if queue:  # more than one step's worth: deliver the rest shortly, after other GUI work
            with self._lock:
                self._armed = True
            self._catch_up.start()
        if batch:
            self.delivered.emit(batch)

    @property
    def pending(self) -> int:
        return len(self._queue)
