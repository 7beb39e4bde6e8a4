"""Per-request time limits, enforced by one watchdog task instead of a timer per request.

`asyncio.timeout()` schedules and cancels a timer handle and does task bookkeeping on every request; at
thousands of requests a second that is a visible share of the server's time. Here a request only enters
and leaves a dict, and one task that wakes every `tick` seconds cancels the requests past their
deadline, which then raise TimeoutError exactly as under `asyncio.timeout()`. A limit fires up to one
tick late, which is nothing next to limits counted in seconds.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from server.background import stop_task

TICK_SECONDS = 0.05


class Deadline:
    """`async with deadlines.limit(seconds):` around the work of one request (in its own task)."""

    __slots__ = ("_cancelling", "_task", "_watch", "_when", "expired")

    def __init__(self, watch: Deadlines, when: float) -> None:
        self._watch = watch
        self._when = when
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self.expired = False

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task(self._watch.loop)  # with the loop given, no lookup (and no getpid)
        if task is None:
            raise RuntimeError("a Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._watch.add(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._watch.discard(self)
        # Our cancel is taken back however the work ended (uncancel runs first); only a cancellation that
        # reached the end of the block becomes the TimeoutError.
        if self.expired and self._task is not None and self._task.uncancel() <= self._cancelling \
                and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def lift(self) -> None:
        """No limit from now on: a response that streams on purpose lives as long as its client wants."""
        self._watch.discard(self)

    def _expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()


class Deadlines:
    """The watchdog: started with the first limit on the running loop, stopped with the app; asleep
    while no request is running."""

    def __init__(self, tick: float = TICK_SECONDS) -> None:
        self._tick = tick
        self._running: dict[Deadline, None] = {}
        self._task: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def limit(self, seconds: float) -> Deadline:
        if self._task is None or self._task.done():
            self.loop = asyncio.get_running_loop()
            self._task = self.loop.create_task(self._watch(), name="request-deadlines")
        return Deadline(self, time.monotonic() + seconds)

    def add(self, deadline: Deadline) -> None:
        if not self._running:
            self._work.set()
        self._running[deadline] = None

    def discard(self, deadline: Deadline) -> None:
        self._running.pop(deadline, None)

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _watch(self) -> None:
        while True:
            if not self._running:
                self._work.clear()
                await self._work.wait()
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            for deadline in [d for d in self._running if d._when <= now]:
                self.discard(deadline)
                deadline._expire()
