"""Per-key token buckets and failed-auth throttling per client address."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int = 0

    def headers(self, window: float) -> dict[str, str]:
        headers = {
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
    slows another.
    """

    def __init__(self, requests: int, window_seconds: float) -> None:
        self.requests = requests
        self.window = window_seconds
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def check(self, key: str, limit: int | None = None) -> Decision:
        capacity = limit or self.requests
        rate = capacity / self.window
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(capacity), now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1:
            tokens -= 1
            self._buckets[key] = (tokens, now)
            return Decision(True, capacity, int(tokens), math.ceil((capacity - tokens) / rate))
        self._buckets[key] = (tokens, now)
        wait = math.ceil((1 - tokens) / rate)
        return Decision(False, capacity, 0, math.ceil((capacity - tokens) / rate), max(wait, 1))


class AuthThrottle:
    """Counts failed authentications per client; past the allowance, blocks with exponential back-off."""

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
        recent = [t for t in self._failures.get(client, []) if now - t < 60] + [now]
        self._failures[client] = recent
        if len(recent) <= self.allowance:
            return 0.0
        _, strikes = self._blocked.get(client, (0.0, 0))
        seconds = min(self.max_block, 30 * 2 ** strikes)
        self._blocked[client] = (now + seconds, strikes + 1)
        self._failures[client] = []
        return seconds

    def success(self, client: str) -> None:
        self._failures.pop(client, None)
