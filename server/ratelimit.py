"""Per-key token buckets, per-key concurrency caps and failed-auth throttling per client address."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from multidict import istr

from server.handoff import Handoff
from server.sharedstate import MemoryTable, Row, Table

# istr: header names case-folded once, not each time a response takes them
_RATELIMIT, _POLICY, _LIMIT, _REMAINING, _RESET = map(istr, (
    "RateLimit", "RateLimit-Policy", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int = 0

    def headers(self, window: float) -> dict[str, str]:
        """The IETF draft's `RateLimit`/`RateLimit-Policy` fields, plus the older trio many clients read."""
        headers = {
            _RATELIMIT: f"limit={self.limit}, remaining={self.remaining}, reset={self.reset_seconds}",
            _POLICY: f"{self.limit};w={int(window)}",
            _LIMIT: str(self.limit),
            _REMAINING: str(self.remaining),
            _RESET: str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class _Lease:
    """Tokens this process took ahead from a shared bucket, spent here without the shared lock."""

    __slots__ = ("capacity", "shared", "tokens", "until")

    def __init__(self, capacity: int, tokens: float, shared: float, until: float) -> None:
        self.capacity = capacity
        self.tokens = tokens
        self.shared = shared  # what the shared bucket held when the lease was taken (for the headers)
        self.until = until


class RateLimiter:
    """A token bucket per key: `requests` tokens, refilled evenly over `window_seconds`.

    A key's own limit overrides the default. Buckets are independent, so one key's flood never
    slows another. Callers without a key get one bucket per client address (`address:` keys).
    The buckets live in `table`: this process's memory, or shared memory when several workers serve.

    With shared buckets (`leases=True`, set for `serve --workers N`), a busy key's worker takes a few
    tokens ahead when it takes one (a lease: at most 1/64 of the key's capacity, at most 32, and only
    while the bucket is at least half full) and spends them without the cross-process lock, which
    every request otherwise took (about 5% of a busy worker's time). Every token spent was taken from
    the shared bucket, so the server never admits more than the bucket gives out; what a lease costs is
    precision at the edges, both bounded by the leases held at once (a key of capacity C on N workers:
    at most N * C/64 tokens): a burst can exceed C by that much when leases taken earlier meet a bucket
    that refilled, and a worker can refuse while another holds unspent leased tokens. Keys below 64
    tokens per window never lease, so their limits stay exact. A lease lives at most `LEASE_SECONDS`;
    its leftover goes back to the bucket with the next take.
    """

    LEASE_SECONDS = 1.0
    _MAX_LEASE = 32
    _MAX_LEASES = 1000

    def __init__(self, requests: int, window_seconds: float, table: Table | None = None, *,
                 leases: bool = False) -> None:
        self.requests = requests
        self.window = window_seconds
        self._table = table if table is not None else MemoryTable(keep_seconds=window_seconds)
        self._leases: dict[str, _Lease] | None = {} if leases else None

    def check(self, key: str, limit: int | None = None) -> Decision:
        capacity = limit or self.requests
        rate = capacity / self.window
        now = time.monotonic()
        leases = self._leases
        returned = 0.0
        if leases is not None:
            lease = leases.get(key)
            if lease is not None:
                if lease.tokens >= 1 and now < lease.until and lease.capacity == capacity:
                    lease.tokens -= 1
                    return _decision(True, capacity, rate, lease.shared + lease.tokens)
                del leases[key]
                returned = lease.tokens
        ahead = min(self._MAX_LEASE, capacity // 64) if leases is not None else 0

        def take(row: Row | None) -> tuple[Row, tuple[bool, float, int]]:
            """Runs inside the shared table's lock (with workers), so it only does the arithmetic."""
            tokens, last = (float(capacity), now) if row is None else row[:2]
            tokens = min(capacity, tokens + max(0.0, now - last) * rate + returned)
            allowed = tokens >= 1
            taken = 0
            if allowed:
                tokens -= 1
                if ahead and tokens - ahead >= capacity / 2:
                    taken = ahead
                    tokens -= taken
            return (tokens, now, 0.0, 0.0), (allowed, tokens, taken)

        allowed, tokens, taken = self._table.update(key, take)
        if taken and leases is not None:
            if len(leases) >= self._MAX_LEASES:
                leases.clear()  # unspent tokens of idle keys are lost to them until their buckets refill
            leases[key] = _Lease(capacity, float(taken), tokens, now + self.LEASE_SECONDS)
            tokens += taken
        return _decision(allowed, capacity, rate, tokens)


def _decision(allowed: bool, capacity: int, rate: float, tokens: float) -> Decision:
    """The answer for a bucket left holding `tokens` (counting this process's lease, if any)."""
    reset = math.ceil((capacity - tokens) / rate)
    if allowed:
        return Decision(True, capacity, int(tokens), reset)
    return Decision(False, capacity, 0, reset, max(math.ceil((1 - tokens) / rate), 1))


_MAX_IDLE_KEYS = 1000


class TooManyInFlight(Exception):
    """The key has its maximum of requests in progress and a full queue behind them."""


class _KeySlots:
    """One key's requests in progress and the queue behind them."""

    __slots__ = ("active", "waiters")

    def __init__(self) -> None:
        self.active = 0
        self.waiters: Handoff[None] = Handoff()

    @property
    def users(self) -> int:
        return self.active + len(self.waiters)


class ConcurrencyLimiter:
    """At most `limit` requests of one key in progress at once; the next ones wait their turn.

    The rate limit bounds how often a key may call; this bounds how much of the server (database
    connections, slow bodies, long queries) it may hold at the same time. Past `limit` requests wait in
    the key's own queue (bounded by the per-request deadline); past `limit + max_waiting` they are
    refused at once. Queues are per key, so one key's pile-up never delays another key.

    A count and a queue of futures rather than an asyncio.Semaphore: a free place is taken without a
    coroutine (in Python 3.11 `Semaphore.acquire` also scans its waiters on every call), and a leaving
    request hands its place straight to the first waiter, so a newcomer cannot jump the queue.
    """

    def __init__(self, limit: int, max_waiting: int | None = None) -> None:
        self.limit = limit
        self.max_waiting = 4 * limit if max_waiting is None else max_waiting
        self._keys: dict[str, _KeySlots] = {}

    def users(self, key: str) -> int:
        entry = self._keys.get(key)
        return entry.users if entry else 0

    def slot(self, key: str) -> _Slot:
        """`async with limiter.slot(key):` holds one of the key's places for the block."""
        return _Slot(self, key)

    def _release(self, key: str, entry: _KeySlots) -> None:
        """Hand the place to the first waiter still waiting (`active` stays as it is), else give it up.
        A key's entry stays when its last request leaves (keys are few), unless there are already many."""
        if entry.waiters.give(None):
            return
        entry.active -= 1
        if not entry.active and len(self._keys) > _MAX_IDLE_KEYS:
            self._keys.pop(key, None)


class _Slot:
    """One request's place in its key's queue (a plain class: this runs on every request, and an
    @asynccontextmanager generator costs several times as much)."""

    __slots__ = ("_entry", "_key", "_left", "_limiter")

    def __init__(self, limiter: ConcurrencyLimiter, key: str) -> None:
        self._limiter = limiter
        self._key = key
        self._left = False

    def leave(self) -> None:
        """Give the place back before the block ends (a response that turns into a long-lived event
        stream holds a stream place instead)."""
        if not self._left:
            self._left = True
            self._limiter._release(self._key, self._entry)

    async def __aenter__(self) -> None:
        limiter, key = self._limiter, self._key
        entry = limiter._keys.get(key)
        if entry is None:
            entry = limiter._keys[key] = _KeySlots()
        self._entry = entry
        if entry.active < limiter.limit and not entry.waiters:
            entry.active += 1
            return
        if entry.users >= limiter.limit + limiter.max_waiting:
            raise TooManyInFlight(key)
        await entry.waiters.wait(lambda _: limiter._release(key, entry))

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._left:
            self._limiter._release(self._key, self._entry)


class AuthThrottle:
    """Counts failed authentications per client; past the allowance, blocks with exponential back-off.

    The allowance is a bucket of `per_minute` failures that refills at that rate (so a burst of more than
    `per_minute` failures within a minute starts a block). Each block doubles the previous one (30 s, 60 s,
    120 s, ... up to `max_block_seconds`); an address that stays quiet for a whole maximum block starts
    again from the shortest one. A row per client: (failures left, refilled at, blocked until, strikes),
    in `table` (shared memory when several workers serve, so the count is the server's, not a worker's).
    """

    def __init__(self, per_minute: int, max_block_seconds: float = 900, table: Table | None = None) -> None:
        self.allowance = per_minute
        self.max_block = max_block_seconds
        self._table = table if table is not None else MemoryTable(keep_seconds=2 * max_block_seconds + 60)

    def blocked_for(self, client: str) -> float:
        row = self._table.get(client)
        return max(0.0, row[2] - time.monotonic()) if row else 0.0

    def failure(self, client: str) -> float:
        """Record a failure; returns the block length when this failure starts a block, else 0."""
        now = time.monotonic()

        def count(row: Row | None) -> tuple[Row, float]:
            left, refilled, until, strikes = row or (float(self.allowance), now, 0.0, 0.0)
            left = min(float(self.allowance), left + max(0.0, now - refilled) * self.allowance / 60) - 1
            if left >= 0:
                return (left, now, until, strikes), 0.0
            if now - until > self.max_block:
                strikes = 0
            seconds = min(self.max_block, 30 * 2 ** int(strikes))
            return (float(self.allowance), now, now + seconds, strikes + 1), seconds

        return self._table.update(client, count)
