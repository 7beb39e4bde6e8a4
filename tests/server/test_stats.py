"""Refusals (401, 403, 429) count apart from failures, and are explained by key and reason: from events
built by hand, and from a real server turning real requests away."""

from __future__ import annotations

import datetime as dt
from typing import Any

from server.events import RequestFinished
from server.state import connect_state
from server.stats import FIX_KEYS, FIX_RATE_LIMIT, LiveStats, count_today, explain

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def event(status: int, code: str | None = None, detail: str | None = None, key: str | None = "Voka AI",
          tool: str | None = "check_inventory") -> RequestFinished:
    return RequestFinished("2026-01-01T00:00:00.000+00:00", "k1" if key else None, key, "10.0.0.5", "POST",
                           "/query", "rest", tool, status, 1.0, None, code, detail=detail)


def test_refused_calls_are_counted_apart_from_failures_and_grouped_by_key_and_reason():
    clock = Clock()
    stats = LiveStats(window_seconds=60, recent_seconds=30, clock=clock)
    stats.add([event(200)] * 5)
    stats.add([event(429, "rate_limited", "over 120 requests per 60 s")] * 40)
    stats.add([event(401, "unauthorized", "wrong secret for key Voka AI", key=None)] * 3)
    stats.add([event(500, "internal_error")] * 2)
    snap = stats.snapshot()
    assert (snap.recent_requests, snap.recent_errors, snap.recent_refused) == (50, 2, 43)
    assert abs(snap.error_rate - 2 / 50) < 1e-9 and abs(snap.refused_rate - 43 / 50) < 1e-9
    first, second = snap.refusals
    assert (first.kind, first.key_name, first.count, first.limit, first.window_seconds, first.tool) == (
        "rate_limit", "Voka AI", 40, 120, 60.0, "check_inventory")
    assert (second.kind, second.key_name, second.count) == ("wrong_secret", "Voka AI", 3)

    said = explain(first, default_limit=120)
    assert said.headline == "Voka AI is over its limit of 120 per minute"
    assert "40 calls were turned away" in said.advice
    assert (said.fix, said.fix_label) == (FIX_RATE_LIMIT, "Raise the limit in Settings")
    wrong = explain(second)
    assert wrong.headline == "Someone is using a wrong key for “Voka AI”"
    assert (wrong.fix, wrong.key_name, wrong.fix_label) == (FIX_KEYS, "Voka AI", "Open the key “Voka AI”")


def test_the_refused_series_follows_the_chart_slots_and_old_refusals_leave():
    clock = Clock()
    stats = LiveStats(window_seconds=60, recent_seconds=30, clock=clock)
    stats.add([event(429, "rate_limited", "over 5 requests per 3600 s")] * 10)
    clock.now += 5
    stats.add([event(200)] * 5)
    traffic = stats.traffic(seconds=10, step=5)
    assert traffic.refused == [2.0, 0.0] and traffic.rates == [2.0, 1.0]
    assert stats.series(seconds=10, step=5) == (traffic.rates, traffic.latency)
    assert explain(stats.snapshot().refusals[0], 120).headline == "Voka AI is over its limit of 5 per hour"
    clock.now += 31
    snap = stats.snapshot()
    assert snap.recent_refused == 0 and snap.refusals == ()


def test_each_reason_gets_plain_words_and_its_fix():
    stats = LiveStats(clock=Clock())
    stats.add([
        event(403, "forbidden", None, tool="sql"),
        event(401, "unauthorized", "no key", key=None, tool=None),
        event(401, "unauthorized", "revoked key Old till", key=None),
        event(401, "unauthorized", "unknown key id (another install, or deleted)", key=None),
        event(429, "auth_throttled", "address blocked after repeated failed authentication", key=None),
        event(429, "too_many_concurrent", "over 8 requests in progress and 8 waiting"),
        event(403, "host_not_allowed", "host not allowed", key=None),
        event(429, "rate_limited", "over 50 requests per 60 s"),
    ])
    said = {r.kind: explain(r, default_limit=120) for r in stats.snapshot().refusals}
    assert said["not_allowed"].headline == "Voka AI is not allowed to do this"
    assert "raw SQL" in said["not_allowed"].advice and said["not_allowed"].fix == FIX_KEYS
    assert said["no_key"].headline == "Someone is calling without a key"
    assert said["revoked_key"].headline == "Someone is using the revoked key “Old till”"
    assert said["unknown_key"].headline == "Someone is using a wrong key"
    assert said["blocked"].headline == "Calls from 10.0.0.5 are blocked for a while"
    assert said["too_many_at_once"].fix == ""
    assert said["wrong_address"].fix == "public_url"
    own_limit = said["rate_limit"]  # 50 is not the server's 120: the key has its own limit
    assert own_limit.headline == "Voka AI is over its limit of 50 per minute" and own_limit.fix == FIX_KEYS


async def test_a_real_server_names_the_key_the_reason_and_what_was_asked(make_server) -> None:
    running = await make_server({"rate_limit": {"requests": 2}})
    secret = await running.create_key("Voka AI", ("query",))
    seen: list[Any] = []
    running.bridge.events.subscribe(seen.append)
    for _ in range(3):
        await running.post("/query", INVENTORY, key=secret)
    wrong = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    status, body, _ = await running.post("/query", {"query": f"SELECT '{secret}'"}, key=wrong)
    assert (status, body["error"]) == (401, "Unauthorized")
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "find_customer_by_phone",
                                                                        "arguments": {}}}
    assert (await running.post("/mcp", rpc, key=secret))[0] == 429

    stats = LiveStats()
    stats.add([e for e in seen if isinstance(e, RequestFinished)])
    snap = stats.snapshot()
    assert [e.status for e in seen if isinstance(e, RequestFinished)] == [200, 200, 429, 401, 429]
    assert snap.recent_refused == 3 and snap.recent_errors == 0
    limited, guessed = snap.refusals
    assert explain(limited, 2).headline == "Voka AI is over its limit of 2 per minute"
    assert limited.count == 2 and limited.tool == "find_customer_by_phone"  # the latest one asked for it
    assert explain(guessed).headline == "Someone is using a wrong key for “Voka AI”"

    await running.bridge.audit.flush()
    rows = list(reversed(await running.bridge.on_state(running.bridge.audit.recent, 10)))
    refused = [(r["status"], r["protocol"], r["tool"], r["detail"]) for r in rows[2:]]
    assert refused == [(429, "rest", "check_inventory", "over 2 requests per 60 s"),
                       (401, "rest", "sql", "wrong secret for key Voka AI"),
                       (429, "mcp", "find_customer_by_phone", "over 2 requests per 60 s")]
    assert secret not in str(rows) and wrong not in str(rows)


def test_today_counts_earlier_rows_only_before_the_live_count_began(tmp_path) -> None:
    """The app adds live events to the rows already in the audit log; a row written after the live count
    began is one of those events, and counting it twice made "Requests today" too high."""
    conn = connect_state(tmp_path / "state.sqlite3")
    now = dt.datetime.now(dt.UTC)
    yesterday = dt.datetime.combine(dt.date.today(), dt.time()).astimezone(dt.UTC) - dt.timedelta(hours=1)
    for ts in (yesterday, now - dt.timedelta(seconds=30), now - dt.timedelta(seconds=2),
               now + dt.timedelta(seconds=1), now + dt.timedelta(seconds=5)):
        conn.execute("INSERT INTO audit (ts, method, route, status, duration_ms) VALUES (?, 'POST', '/query', "
                     "200, 1.0)", (ts.isoformat(timespec="milliseconds"),))
    assert count_today(conn, before=now) == 2
    assert count_today(conn, before=now + dt.timedelta(seconds=10)) == 4
