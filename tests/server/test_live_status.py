"""Live stats (bounded, percentiles, series), the one-word status rule, and notice rules."""

from __future__ import annotations

from server.events import AuthBlocked, HealthChanged, RequestFinished, ServerStateChanged
from server.notices import NoticeRules
from server.stats import LiveStats, turned_away
from server.status import overall


def event(status: int = 200, ms: float = 10.0) -> RequestFinished:
    return RequestFinished("2026-01-01T00:00:00.000+00:00", "k", "key", "127.0.0.1", "POST", "/query",
                           "rest", "t", status, ms, 1, None if status < 400 else "boom")


def refused_event(detail: str) -> RequestFinished:
    """A 401 as server.http.auth records it, `detail` saying why."""
    return RequestFinished("2026-01-01T00:00:00.000+00:00", None, None, "127.0.0.1", "POST", "/query",
                           "rest", "t", 401, 1.0, None, "unauthorized", detail=detail)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_stats_percentiles_error_rate_and_series():
    clock = Clock()
    stats = LiveStats(window_seconds=60, recent_seconds=30, clock=clock)
    stats.add([event(ms=float(i)) for i in range(1, 101)])
    clock.now += 1
    stats.add([event(500, 5.0)] * 10)
    snap = stats.snapshot()
    assert snap.requests_today == 110 and snap.recent_requests == 110 and snap.recent_errors == 10
    assert abs(snap.error_rate - 10 / 110) < 1e-9
    assert snap.p50_ms is not None and 40 <= snap.p50_ms <= 50
    assert "500" in snap.last_error
    rates, latency = stats.series(seconds=10, step=5)
    assert len(rates) == 2 and abs(sum(rates) * 5 - 110) < 1e-9 and max(latency) > 0


def test_stats_memory_is_bounded_by_the_window():
    clock = Clock()
    stats = LiveStats(window_seconds=10, recent_seconds=5, clock=clock)
    for _ in range(100):
        stats.add([event()] * 1000)
        clock.now += 1
    assert len(stats._seconds) <= 10
    assert all(len(b.latencies) <= 200 for b in stats._seconds)
    assert stats.requests_today == 100_000


def test_overall_status_rule():
    assert overall("serving", True).state == "serving"
    assert overall("serving", False, "file missing").state == "failed"
    assert "file missing" in overall("serving", False, "file missing").reason
    assert overall("stopped", True).state == "stopped"
    assert overall("failed", True, failure="Port 1 busy").reason == "Port 1 busy"
    assert overall("serving", True, recent_requests=20, recent_errors=5).state == "degraded"
    assert overall("serving", True, recent_requests=20, recent_errors=1).state == "serving"
    assert overall("serving", True, recent_requests=20, p95_ms=5000).state == "degraded"


def test_most_calls_with_a_key_turned_away_is_not_serving_but_keyless_ones_are_someone_else():
    why = "Voka phone is over its limit of 5 per minute"
    refused = overall("serving", True, recent_requests=20, turned_away=(15, why))
    assert refused.state == "degraded"
    assert refused.reason == f"Most calls are turned away (15 of the last 20): {why}."
    assert overall("serving", True, recent_requests=20, turned_away=(9, why)).state == "serving"
    assert overall("serving", True, recent_requests=4, turned_away=(4, why)).state == "serving"  # too few

    stats = LiveStats(clock=Clock())
    stats.add([refused_event("no key")] * 9 + [event()])
    assert turned_away(stats.snapshot()) == (0, "")  # a scanner without a key: Voka is still answered
    stats.add([refused_event("unknown key id")] * 2)  # a key of another install, say
    assert turned_away(stats.snapshot()) == (2, "Someone is using a wrong key")
    stats.add([refused_event("expired key Voka phone")] * 3)
    assert turned_away(stats.snapshot()) == (5, "Someone is using the expired key “Voka phone”")


def test_notice_rules_once_per_cause():
    clock = Clock()
    rules = NoticeRules(clock=clock)
    down = HealthChanged(False, "gone")
    assert rules.for_event(down) is not None
    assert rules.for_event(down) is None
    assert rules.for_event(HealthChanged(True, "ok")).title == "Database back"  # type: ignore[union-attr]
    assert rules.for_event(ServerStateChanged("failed", detail="Port busy")).text == "Port busy"  # type: ignore[union-attr]
    assert rules.for_event(ServerStateChanged("serving")) is None
    assert "10.0.0.9" in rules.for_event(AuthBlocked("10.0.0.9", 60)).text  # type: ignore[union-attr]
    assert rules.for_event(AuthBlocked("10.0.0.9", 60)) is None
    clock.now += 301
    assert rules.for_event(AuthBlocked("10.0.0.9", 60)) is not None
