"""Per-key token buckets, per-key concurrency caps and failed-auth throttling per client address."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

# Past this many tracked addresses, stale entries are dropped so a spray of addresses cannot grow memory.
_MAX_TRACKED_CLIENTS = 10_000


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
            "RateLimit": f"limit={self.limit}, remaining={self.remaining}, reset={self.reset_seconds}",
            "RateLimit-Policy": f"{self.limit};w={int(window)}",
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    """A token bucket per key: `requests` tokens, refilled evenly over `window_seconds`.

    A key's own limit overrides the default. Buckets are independent, so one key's flood never
    slows another. Callers without a key get one bucket per client address (`address:` keys).
    """

    def __init__(self, requests: int, window_seconds: float) -> None:
        self.requests = requests
        self.window = window_seconds
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def check(self, key: str, limit: int | None = None) -> Decision:
        capacity = limit or self.requests
        rate = capacity / self.window
        now = time.monotonic()
        if len(self._buckets) > _MAX_TRACKED_CLIENTS:
            self._prune(now)
        tokens, last = self._buckets.get(key, (float(capacity), now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1:
            tokens -= 1
            self._buckets[key] = (tokens, now)
            return Decision(True, capacity, int(tokens), math.ceil((capacity - tokens) / rate))
        self._buckets[key] = (tokens, now)
        wait = math.ceil((1 - tokens) / rate)
        return Decision(False, capacity, 0, math.ceil((capacity - tokens) / rate), max(wait, 1))

    def _prune(self, now: float) -> None:
        """Forget buckets idle for a whole window: they would be full again anyway."""
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < self.window}


class TooManyInFlight(Exception):
    """The key has its maximum of requests in progress and a full queue behind them."""


@dataclass
class _KeySlots:
    semaphore: asyncio.Semaphore
    users: int = 0  # in progress + waiting


class ConcurrencyLimiter:
    """At most `limit` requests of one key in progress at once; the next ones wait their turn.

    The rate limit bounds how often a key may call; this bounds how much of the server (database
    connections, slow bodies, long queries) it may hold at the same time. Past `limit` requests wait in
    the key's own queue (bounded by the per-request deadline); past `limit + max_waiting` they are
    refused at once. Queues are per key, so one key's pile-up never delays another key.
    """

    def __init__(self, limit: int, max_waiting: int | None = None) -> None:
        self.limit = limit
        self.max_waiting = 4 * limit if max_waiting is None else max_waiting
        self._keys: dict[str, _KeySlots] = {}

    def users(self, key: str) -> int:
        entry = self._keys.get(key)
        return entry.users if entry else 0

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _KeySlots(asyncio.Semaphore(self.limit))
        if entry.users >= self.limit + self.max_waiting:
            raise TooManyInFlight(key)
        entry.users += 1
        try:
            async with entry.semaphore:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                self._keys.pop(key, None)


class AuthThrottle:
    """Counts failed authentications per client; past the allowance, blocks with exponential back-off.

    Each block doubles the previous one (30 s, 60 s, 120 s, ... up to `max_block_seconds`); an address
    that stays quiet for a whole maximum block starts again from the shortest one.
    """

    def __init__(self, per_minute: int, max_block_seconds: float = 900) -> None:
        self.allowance = per_minute
        self.max_block = max_block_seconds
        self._failures: dict[str, list[float]] = {}
        self._blocked: dict[str, tuple[float, int]] = {}  # client -> (until, strikes)

    def blocked_for(self, client: str) -> float:
        until, _ = self._blocked.get(client, (0.0, 0))
        return max(0.0, until - time.monotonic())

    def failure(self, client: str) -> float:
        """Record a failure; returns the block length when this failure starts a block, else 0."""
        now = time.monotonic()
        if len(self._failures) + len(self._blocked) > _MAX_TRACKED_CLIENTS:
            self._prune(now)
        recent = [t for t in self._failures.get(client, []) if now - t < 60] + [now]
        self._failures[client] = recent
        if len(recent) <= self.allowance:
            return 0.0
        until, strikes = self._blocked.get(client, (0.0, 0))
        if now - until > self.max_block:
            strikes = 0
        seconds = min(self.max_block, 30 * 2 ** strikes)
        self._blocked[client] = (now + seconds, strikes + 1)
        self._failures[client] = []
        return seconds

    def success(self, client: str) -> None:
        self._failures.pop(client, None)

    def _prune(self, now: float) -> None:
        self._failures = {c: ts for c, ts in self._failures.items() if ts and now - ts[-1] < 60}
        self._blocked = {c: (until, strikes) for c, (until, strikes) in self._blocked.items()
                         if now - until <= self.max_block}
