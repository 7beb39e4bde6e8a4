"""Live request statistics for the Overview page and the tray tooltip: fed with RequestFinished events.

Bounded memory whatever the traffic: per-second buckets for the last `window_seconds`, and a capped
sample of recent latencies for the percentiles.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from server.events import RequestFinished


@dataclass
class _Second:
    at: int
    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


MAX_LATENCIES_PER_SECOND = 200


@dataclass(frozen=True)
class Snapshot:
    requests_today: int
    recent_requests: int
    recent_errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    last_error: str


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class LiveStats:
    """`add()` events as they come; `snapshot()` and `series()` read the recent window."""

    def __init__(self, window_seconds: int = 600, recent_seconds: int = 300,
                 clock: Callable[[], float] = time.time) -> None:
        self.window_seconds = window_seconds
        self.recent_seconds = recent_seconds
        self._clock = clock
        self._seconds: deque[_Second] = deque()
        self._today = dt.date.today()
        self.requests_today = 0
        self.last_error = ""
        self._percentiles: tuple[float | None, float | None] = (None, None)
        self._percentiles_at = -1

    def seed_today(self, count: int) -> None:
        """Requests already recorded today (from state.sqlite3) before this app started watching."""
        self.requests_today += count

    def add(self, events: Iterable[RequestFinished]) -> None:
        now = int(self._clock())
        today = dt.date.today()
        if today != self._today:
            self._today, self.requests_today = today, 0
        for event in events:
            if not self._seconds or self._seconds[-1].at != now:
                self._seconds.append(_Second(now))
            bucket = self._seconds[-1]
            bucket.count += 1
            if event.status >= 500:
                bucket.errors += 1
            if event.status >= 400:
                self.last_error = f"{event.status} {event.error_code or ''} on {event.route}".strip()
            if len(bucket.latencies) < MAX_LATENCIES_PER_SECOND:
                bucket.latencies.append(event.duration_ms)
            self.requests_today += 1
        self._trim(now)

    def _trim(self, now: int) -> None:
        while self._seconds and self._seconds[0].at <= now - self.window_seconds:
            self._seconds.popleft()

    def _recent(self, seconds: int) -> list[_Second]:
        now = int(self._clock())
        self._trim(now)
        return [b for b in self._seconds if b.at > now - seconds]

    def snapshot(self) -> Snapshot:
        """Counts are exact; the percentiles are recomputed at most once a second (they sort a sample)."""
        now = int(self._clock())
        recent = self._recent(self.recent_seconds)
        count = sum(b.count for b in recent)
        errors = sum(b.errors for b in recent)
        if self._percentiles_at != now:
            latencies = sorted(v for b in recent for v in b.latencies)
            self._percentiles = (_percentile(latencies, 50), _percentile(latencies, 95))
            self._percentiles_at = now
        p50, p95 = self._percentiles
        return Snapshot(self.requests_today, count, errors, errors / count if count else 0.0, p50, p95,
                        self.last_error)

    def series(self, seconds: int = 300, step: int = 5) -> tuple[list[float], list[float]]:
        """(requests per second, p95 latency ms) per `step`-second slot, oldest first, `seconds` long."""
        now = int(self._clock())
        slots = seconds // step
        rates = [0.0] * slots
        samples: list[list[float]] = [[] for _ in range(slots)]
        start = now - slots * step + 1
        for bucket in self._recent(seconds):
            index = (bucket.at - start) // step
            if 0 <= index < slots:
                rates[index] += bucket.count / step
                samples[index].extend(bucket.latencies)
        latency = [_percentile(sorted(s), 95) or 0.0 for s in samples]
        return rates, latency


def count_today(conn: sqlite3.Connection) -> int:
    """Requests recorded in the audit log since local midnight (audit times are UTC ISO strings)."""
    midnight = dt.datetime.combine(dt.date.today(), dt.time()).astimezone(dt.UTC)
    row = conn.execute("SELECT COUNT(*) FROM audit WHERE ts >= ?",
                       (midnight.isoformat(timespec="milliseconds"),)).fetchone()
    return int(row[0])
