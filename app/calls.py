"""GUI → server calls that never block the window: results come back to GUI-thread callbacks.

A coroutine (or a blocking function, run on a worker) is submitted to the server loop; its future's
done-callback, which runs on the server thread, emits a queued signal; the slot here, in the GUI
thread, calls the owner's callback.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import CancelledError, Future
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot

from server.embedded import EmbeddedServer

log = logging.getLogger(__name__)
OnDone = Callable[[Any], None]
OnError = Callable[[BaseException], None]


class Calls(QObject):
    _finished = Signal(int, object, object)

    def __init__(self, server: EmbeddedServer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.server = server
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[OnDone | None, OnError | None]] = {}
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> int:
        return len(self._pending)

    def track(self, future: Future[Any], on_done: OnDone | None = None,
              on_error: OnError | None = None) -> None:
        call_id = next(self._ids)
        self._pending[call_id] = (on_done, on_error)

        def done(fut: Future[Any]) -> None:
            try:
                result, error = fut.result(), None
            except CancelledError as exc:
                result, error = None, exc
            except BaseException as exc:
                result, error = None, exc
            self._finished.emit(call_id, result, error)

        future.add_done_callback(done)

    def run(self, coro: Coroutine[Any, Any, Any], on_done: OnDone | None = None,
            on_error: OnError | None = None) -> None:
        if self.server.loop.is_closed():  # the app is quitting; nothing runs any more
            coro.close()
            return
        self.track(self.server.submit(coro), on_done, on_error)

    def blocking(self, fn: Callable[..., Any], *args: Any, on_done: OnDone | None = None,
                 on_error: OnError | None = None) -> None:
        if self.server.loop.is_closed():
            return
        self.track(self.server.run_blocking(fn, *args), on_done, on_error)

    def forget(self) -> None:
        """Drop callbacks of calls still running (their windows are closing)."""
        self._pending.clear()

    @Slot(int, object, object)
    def _deliver(self, call_id: int, result: Any, error: BaseException | None) -> None:
        callbacks = self._pending.pop(call_id, None)
        if callbacks is None:
            return
        on_done, on_error = callbacks
        try:
            if error is not None:
                if on_error is not None:
                    on_error(error)
                else:
                    log.error("background call failed: %s", error)
            elif on_done is not None:
                on_done(result)
        except RuntimeError as exc:  # the widget that asked was closed meanwhile
            if "already deleted" not in str(exc):
                raise
            log.debug("result arrived after its window closed: %s", exc)
