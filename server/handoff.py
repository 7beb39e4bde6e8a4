"""A first-come, first-served queue of coroutines waiting for something another one hands over.

Three places share it: the per-key concurrency cap hands over a place, the SQLite backend a reader, the
PostgreSQL pool a connection (or a free place to open one). The subtle part is the same in each: a waiter
cancelled in the instant it was handed something must pass it on, or it is lost for good.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[T]] = deque()

    def __len__(self) -> int:
        return len(self._waiters)

    def join(self) -> asyncio.Future[T]:
        """A place at the end of the queue (for `wait`); the future also lets a caller end it early."""
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self, pass_on: Callable[[T], None], waiter: asyncio.Future[T] | None = None) -> T:
        """What is handed to this waiter. If the wait ends otherwise (cancelled, or failed through its
        future) just as something was handed over, that goes to `pass_on` instead of being lost."""
        waiter = self.join() if waiter is None else waiter
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                pass_on(waiter.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def give(self, item: T) -> bool:
        """Hand `item` to the first waiter still waiting; False when nobody waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return True
        return False

    def fail(self, make_error: Callable[[], BaseException]) -> None:
        """End every wait with an error (the thing waited for is going away)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(make_error())
