"""A first-come, first-served queue of coroutines waiting for something another one hands over.

Three places share it: the per-key concurrency cap hands over a place, the SQLite backend a reader, the
PostgreSQL pool a connection (or a free place to open one). The subtle part is the same in each: a waiter
cancelled in the instant it was handed something must pass it on, or it is lost for good. `Shares` below
counts how many of a pool's places each API key holds.
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

    def give_first(self, item: T, accept: Callable[[asyncio.Future[T]], bool]) -> bool:
        """Hand `item` to the first waiter still waiting that `accept`s it (asked in queue order, and
        only for waiters still waiting); False when none does."""
        waiters = self._waiters
        index = 0
        while index < len(waiters):
            waiter = waiters[index]
            if waiter.done():
                del waiters[index]
                continue
            if accept(waiter):
                del waiters[index]
                waiter.set_result(item)
                return True
            index += 1
        return False

    def fail(self, make_error: Callable[[], BaseException]) -> None:
        """End every wait with an error (the thing waited for is going away)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(make_error())


K = TypeVar("K")


class Shares(Generic[K]):
    """How many of a pool's places (SQLite readers, PostgreSQL connections) each owner (an API key) holds.

    An owner may always hold up to `share` places (half the pool); beyond that it may take one more only
    while `spare` places (one) would still be left to everyone else. So a key alone uses nearly the
    whole pool, and a key flooding with slow statements still leaves room for another key's call, which
    then reclaims places as the flood's statements end (max-min fair over time). An owner that may not
    take a place waits in a queue of its own, first come first served (`take`; the SQLite readers), or
    the pool asks `take_now` as it hands out places to its own queue (the PostgreSQL pool, so a request
    waits once). Taking and giving back a place is a dict update, with no coroutine, unless someone waits.
    """

    def __init__(self, share: int, capacity: int | None = None, spare: int = 1) -> None:
        self.share = max(1, share)
        self.capacity = capacity  # None: an owner never holds more than `share`
        self.spare = spare
        self._held: dict[K, int] = {}
        self._total = 0
        self._queues: dict[K, Handoff[None]] = {}

    def held(self, owner: K) -> int:
        return self._held.get(owner, 0)

    def _allowed(self, count: int) -> bool:
        """May an owner holding `count` places take one more?"""
        if count < self.share:
            return True
        return self.capacity is not None and self.capacity - self._total - 1 >= self.spare

    def take_now(self, owner: K) -> bool:
        """Take one of the owner's places if it may (and nobody of its own waits for one)."""
        count = self._held.get(owner, 0)
        if owner in self._queues or not self._allowed(count):
            return False
        self._held[owner] = count + 1
        self._total += 1
        return True

    async def take(self, owner: K, wait: float | None = None) -> None:
        """One place for the owner, waiting at most `wait` seconds (TimeoutError), behind the owner's own
        earlier requests, until it may take one."""
        if self.take_now(owner):
            return
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = Handoff()
        waiter = queue.join()
        try:
            if wait is None:
                await queue.wait(lambda _: self.give_back(owner), waiter)
            else:
                async with asyncio.timeout(wait):
                    await queue.wait(lambda _: self.give_back(owner), waiter)
        finally:
            if not queue and self._queues.get(owner) is queue:
                del self._queues[owner]

    def give_back(self, owner: K) -> None:
        """The owner's place is free: it goes to the first waiting owners that may take one now."""
        count = self._held.get(owner, 0) - 1
        if count > 0:
            self._held[owner] = count
        else:
            self._held.pop(owner, None)
        self._total -= 1
        if self._queues:
            self._hand_out()

    def _hand_out(self) -> None:
        for owner, queue in list(self._queues.items()):
            while queue and self._allowed(self._held.get(owner, 0)):
                self._held[owner] = self._held.get(owner, 0) + 1  # counted before the waiter runs
                self._total += 1
                if not queue.give(None):  # nobody left in it after all
                    self._held[owner] -= 1
                    self._total -= 1
                    if not self._held[owner]:
                        del self._held[owner]
                    break
