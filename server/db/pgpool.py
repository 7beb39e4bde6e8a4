"""The PostgreSQL backend's connection pool: LIFO, no timer or task per request, and connections that may
wait between requests inside a read-only transaction we already opened.

Why not asyncpg's own Pool: it rolls back any open transaction when a connection comes back, so the next
read's `BEGIN READ ONLY` cannot travel with the previous read's cleanup (a round trip saved per read), and
each release costs a task (asyncio.shield) and an idle timer. Measured on the seed lookup, the two together
were about a fifth of the server's work per request. The connections themselves are plain asyncpg
connections (prepared statements, codecs, the wire protocol are all asyncpg's).

A connection "armed" this way has run nothing in its transaction: it holds no table lock, no snapshot and
no transaction id, so it blocks neither VACUUM nor DDL; `idle_lifetime` (below the server-side
idle_in_transaction_session_timeout the backend sets) bounds how long it waits.

Connections are lent to owners (API keys) within their share (server.handoff.Shares): a request whose key
may not take one more waits in the same queue as everyone else, first come first served, and is skipped
until it may; so a key's flood of slow statements never takes the whole pool, and one wait (with the
pool's one deadline sweeper) is all a request ever pays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from server.handoff import Handoff, Shares


class PoolClosed(Exception):
    """The pool was closed (the server is stopping or the database settings changed)."""


@dataclass(eq=False)
class Pooled:
    """A connection and what the pool knows of it."""

    con: asyncpg.Connection
    idle_since: float = 0.0
    armed: str | None = None  # the BEGIN ... text of the (empty) transaction it waits in, if any
    owner: str | None = None  # the API key it is lent to (PostgresDatabase counts its share)
    guard: Any = None  # PostgresDatabase's _WireGuard for its socket, once made (False: none possible)


class _Turn:
    """A waiting request's owner, and whether its share place is counted already."""

    __slots__ = ("admitted", "owner")

    def __init__(self, owner: str | None, admitted: bool) -> None:
        self.owner = owner
        self.admitted = admitted


class ConnectionPool:
    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], max_size: int,
                 idle_lifetime: float, shares: Shares[str] | None = None) -> None:
        self._connect = connect
        self.max_size = max_size
        self.idle_lifetime = idle_lifetime
        self.shares = shares
        self._free: list[Pooled] = []  # the most recently used on top
        self._size = 0  # open, opening or promised to a waiter; free or in use
        self._waiters: Handoff[Pooled | None] = Handoff()
        self._deadlines: dict[asyncio.Future[Pooled | None], float] = {}
        self._turns: dict[asyncio.Future[Pooled | None], _Turn] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._free)

    async def acquire(self, wait: float, owner: str | None = None) -> Pooled:
        """A free connection, a new one while under max_size, else the next one released within `wait`
        seconds (TimeoutError after that). Opening a connection is bounded by the connect timeout. An
        `owner` that may not take one more connection (its share) waits its turn in the same queue."""
        if self._closed:
            raise PoolClosed
        shares = self.shares
        admitted = owner is None or shares is None or shares.take_now(owner)
        if admitted:
            while self._free:
                pooled = self._free.pop()
                if not pooled.con.is_closed():
                    pooled.owner = owner
                    return pooled
                self._size -= 1  # the server ended it (a restart, an idle timeout)
            if self._size < self.max_size:
                self._size += 1
                return await self._open(owner)
        waiter = self._waiters.join()
        turn = self._turns[waiter] = _Turn(owner, admitted)
        self._deadlines[waiter] = time.monotonic() + wait
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="pg-pool-waits")
        try:
            pooled = await self._waiters.wait(lambda item: self._pass_on(turn, item), waiter)
        except BaseException:
            if self._unshare(turn):
                self._hand_out()  # the share it held may let another request in now
            raise
        finally:
            self._deadlines.pop(waiter, None)
            self._turns.pop(waiter, None)
        if pooled is None:  # a place was freed and promised to us: open it
            return await self._open(owner)
        pooled.owner = owner
        return pooled

    def _accept(self, waiter: asyncio.Future[Pooled | None]) -> bool:
        """May this waiter have a connection now? Takes its share place when it was not counted yet."""
        turn = self._turns.get(waiter)
        if turn is None or turn.admitted:
            return True
        assert self.shares is not None and turn.owner is not None
        turn.admitted = self.shares.take_now(turn.owner)
        return turn.admitted

    def _unshare(self, turn: _Turn) -> bool:
        """A waiter leaves without a connection: its share place, if counted, is free again."""
        if not turn.admitted or turn.owner is None or self.shares is None:
            return False
        turn.admitted = False
        self.shares.give_back(turn.owner)
        return True

    def _pass_on(self, turn: _Turn, item: Pooled | None) -> None:
        """A waiter was handed `item` but is gone (cancelled, timed out): give up its share, pass it on."""
        self._unshare(turn)
        self._give_back(item)

    def _hand_out(self) -> None:
        """After shares changed outside a release: free connections (or room to open one) go to the
        waiters that may now have one."""
        while len(self._waiters):
            if self._free:
                item: Pooled | None = self._free.pop()
                if item is not None and item.con.is_closed():  # the server ended it while it waited
                    self._size -= 1
                    continue
            elif self._size < self.max_size:
                item = None
                self._size += 1
            else:
                return
            if not self._waiters.give_first(item, self._accept):
                if item is None:
                    self._size -= 1
                else:
                    self._free.append(item)
                return

    async def _sweep(self, tick: float = 0.02) -> None:
        """Ends waits past their deadline (TimeoutError), for every waiter at once: one task while some
        request waits, instead of a timer per waiting request."""
        while self._deadlines:
            now = time.monotonic()
            for waiter, deadline in list(self._deadlines.items()):
                if deadline <= now and not waiter.done():
                    waiter.set_exception(TimeoutError())
            await asyncio.sleep(tick)

    async def _open(self, owner: str | None = None) -> Pooled:
        """Open a connection in a place already counted in _size (and the owner's share)."""
        try:
            return Pooled(await self._connect(), owner=owner)
        except BaseException:
            self._unlend(owner)
            self._free_place()
            raise

    def _unlend(self, owner: str | None) -> None:
        if owner is not None and self.shares is not None:
            self.shares.give_back(owner)

    def release(self, pooled: Pooled, *, reusable: bool) -> None:
        """Back to the next waiter that may have it, or the free list (its owner's share place is free
        again); a connection in an unknown state is closed."""
        owner, pooled.owner = pooled.owner, None
        self._unlend(owner)
        if not reusable or self._closed or pooled.con.is_closed():
            if not pooled.con.is_closed():
                pooled.con.terminate()
            self._free_place()
            return
        pooled.idle_since = time.monotonic()
        self._give_back(pooled)

    def _give_back(self, pooled: Pooled | None) -> None:
        if pooled is None:
            self._free_place()
            return
        if self._waiters.give_first(pooled, self._accept):
            return
        self._free.append(pooled)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap(), name="pg-pool-idle")

    def _free_place(self) -> None:
        """A connection is gone: its place goes to the next waiter that may have it (who opens a new
        one), else back."""
        if not self._waiters.give_first(None, self._accept):
            self._size -= 1

    async def _reap(self) -> None:
        """While connections wait in the pool, close those idle past idle_lifetime (the oldest are at the
        bottom), politely: the server sees a client that said goodbye, not a dropped connection or an
        idle-in-transaction timeout, and logs nothing."""
        while self._free and not self._closed:
            await asyncio.sleep(self.idle_lifetime / 3)
            now = time.monotonic()
            while self._free and now - self._free[0].idle_since > self.idle_lifetime:
                self._size -= 1
                await _close(self._free.pop(0).con)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the free connections politely (ones still in use are closed when released)."""
        for pooled in self._shut():
            await _close(pooled.con, timeout)

    def terminate(self) -> None:
        for pooled in self._shut():
            pooled.con.terminate()

    def _shut(self) -> list[Pooled]:
        """Refuse new work, end every wait with PoolClosed, stop the background tasks; the free
        connections, for the caller to close."""
        self._closed = True
        self._waiters.fail(PoolClosed)
        for task in (self._sweeper, self._reaper):
            if task is not None:
                task.cancel()
        free, self._free = self._free, []
        self._size -= len(free)
        return free


async def _close(con: asyncpg.Connection, timeout: float = 5.0) -> None:
    try:
        await asyncio.wait_for(con.close(), timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        con.terminate()
