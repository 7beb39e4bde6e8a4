"""Abuse limits on the live server: per-key token buckets with the IETF headers, failed-auth throttling
per address (and who counts as an address behind a tunnel), concurrency caps, request deadlines and
slow-loris connections."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

import server.ratelimit as ratelimit_module
from server.events import AuthBlocked
from server.ratelimit import AuthThrottle
from server.sharedstate import SharedState
from tests.conftest import ServerFactory
from tests.security.conftest import (
    audit_rows,
    body_of,
    captured_logs,
    host_of,
    raw_exchange,
    request_bytes,
    status_of,
)

INVENTORY = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}
RUNAWAY_SQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
RATELIMIT = re.compile(r"^limit=(\d+), remaining=(\d+), reset=(\d+)$")


def partial_post(url: str, key: str, *, declared: int = 200, sent: bytes = b'{"name": ') -> bytes:
    """Headers promising `declared` body bytes, followed by only the first few."""
    return request_bytes("POST", "/query", host=host_of(url), body=sent, content_length=declared, headers={
        "Content-Type": "application/json", "x-api-key": key})


async def test_rate_limit_headers_follow_the_ietf_draft(make_server: ServerFactory) -> None:
    running = await make_server({"rate_limit": {"requests": 4, "window_seconds": 60}})
    key = await running.create_key("k", ("query",))
    remaining = []
    for _ in range(4):
        status, _, response = await running.post("/query", INVENTORY, key=key)
        assert status == 200
        assert response.headers["RateLimit-Policy"] == "4;w=60"
        match = RATELIMIT.match(response.headers["RateLimit"])
        assert match and match.group(1) == "4"
        remaining.append(int(match.group(2)))
    assert remaining == [3, 2, 1, 0]
    status, body, response = await running.post("/query", INVENTORY, key=key)
    assert (status, body["code"]) == (429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 15  # one token refills in 60/4 s
    assert RATELIMIT.match(response.headers["RateLimit"]).group(2) == "0"  # type: ignore[union-attr]
    row = next(r for r in await audit_rows(running.bridge) if r["status"] == 429)
    assert row["key_name"] == "k" and row["error_code"] == "rate_limited" and "requests per" in row["detail"]


async def test_one_keys_flood_never_slows_another_key(make_server: ServerFactory) -> None:
    running = await make_server({"rate_limit": {"requests": 5, "window_seconds": 60}})
    flooder = await running.create_key("flooder", ("query",))
    calm = await running.create_key("calm", ("query",))
    flood = await asyncio.gather(*(running.post("/query", INVENTORY, key=flooder) for _ in range(40)))
    assert sorted(s for s, _, _ in flood).count(429) == 35
    status, _, response = await running.post("/query", INVENTORY, key=calm)
    assert status == 200
    assert response.headers["RateLimit-Remaining"] == "4"  # a full bucket of its own


async def test_failed_auth_blocks_the_address_once_and_logs_once(make_server: ServerFactory) -> None:
    running = await make_server({"rate_limit": {"failed_auth_per_minute": 3}})
    good = await running.create_key("good", ("query",))
    blocked_events: list[AuthBlocked] = []
    running.bridge.events.subscribe(lambda e: blocked_events.append(e) if isinstance(e, AuthBlocked) else None)
    with captured_logs("server.auth") as logs:
        statuses = [(await running.post("/query", INVENTORY, key=f"vbk_guess{i}_xxxxxxxx"))[0]
                    for i in range(4)]
        assert statuses == [401, 401, 401, 401]  # the 4th failure starts the block
        later = [await running.post("/query", INVENTORY, key=f"vbk_more{i}_xxxxxxxx") for i in range(20)]
    assert {s for s, _, _ in later} == {429}
    assert {b["code"] for _, b, _ in later} == {"auth_throttled"}
    assert 25 <= int(later[0][2].headers["Retry-After"]) <= 31
    # A valid key is admitted during the block: behind a tunnel Voka shares the address with attackers.
    assert (await running.post("/query", INVENTORY, key=good))[0] == 200
    assert (await running.post("/query", INVENTORY, key="vbk_after_good_xxxxxxxx"))[0] == 429  # not forgiven
    assert len(blocked_events) == 1 and blocked_events[0].seconds == 30
    warnings = [m for m in logs.messages() if "blocked" in m]
    assert len(warnings) == 1
    rows = await audit_rows(running.bridge)
    throttled = [r for r in rows if r["error_code"] == "auth_throttled"]
    assert len(throttled) == 21 and all("blocked" in r["detail"] for r in throttled)


async def test_requests_without_any_key_do_not_count_as_guesses(make_server: ServerFactory) -> None:
    running = await make_server({"rate_limit": {"failed_auth_per_minute": 2}})
    good = await running.create_key("good", ("query",))
    for _ in range(10):
        assert (await running.post("/query", INVENTORY))[0] == 401
    assert (await running.post("/query", INVENTORY, key=good))[0] == 200


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "shared-memory"])
def test_blocks_back_off_exponentially_and_forget_a_quiet_address(monkeypatch: Any, shared: bool) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ratelimit_module.time, "monotonic", lambda: clock[0])
    state = SharedState(slots=64)
    try:
        _back_off(clock, AuthThrottle(per_minute=2, max_block_seconds=240,
                                      table=state.tables["auth"] if shared else None))
    finally:
        state.close()


def _back_off(clock: list[float], throttle: AuthThrottle) -> None:

    def strike() -> float:
        blocked = 0.0
        for _ in range(3):
            blocked = throttle.failure("203.0.113.9") or blocked
        return blocked

    lengths = []
    for _ in range(5):
        lengths.append(strike())
        assert throttle.blocked_for("203.0.113.9") == lengths[-1]
        clock[0] += lengths[-1] + 1
        assert throttle.blocked_for("203.0.113.9") == 0
    assert lengths == [30, 60, 120, 240, 240]
    assert throttle.blocked_for("198.51.100.1") == 0  # other addresses are untouched
    clock[0] += 241  # quiet for longer than the longest block: start again from the shortest
    assert strike() == 30


async def test_forwarded_for_is_ignored_unless_the_owner_trusts_a_tunnel(make_server: ServerFactory) -> None:
    running = await make_server({"rate_limit": {"failed_auth_per_minute": 2}})
    for i in range(3):  # a new spoofed address each time does not escape the per-address count
        await running.post("/query", INVENTORY, key="vbk_bad_guess",
                           headers={"X-Forwarded-For": f"198.51.100.{i}"})
    status, body, _ = await running.post("/query", INVENTORY, key="vbk_bad_guess",
                                         headers={"X-Forwarded-For": "198.51.100.99"})
    assert (status, body["code"]) == (429, "auth_throttled")
    assert {r["client"] for r in await audit_rows(running.bridge)} == {"127.0.0.1"}


async def test_trusted_tunnel_throttles_the_real_client_address(make_server: ServerFactory) -> None:
    running = await make_server({"server": {"trust_forwarded_for": True},
                                 "rate_limit": {"failed_auth_per_minute": 2}})
    good = await running.create_key("good", ("query",))
    attacker = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}  # the tunnel appends the real peer last
    for _ in range(3):
        await running.post("/query", INVENTORY, key="vbk_bad_guess", headers=attacker)
    assert (await running.post("/query", INVENTORY, key="vbk_bad_guess", headers=attacker))[0] == 429
    # Another caller behind the same tunnel is unaffected.
    status, _, _ = await running.post("/query", INVENTORY, key=good, headers={"X-Forwarded-For": "192.0.2.44"})
    assert status == 200
    clients = {r["client"] for r in await audit_rows(running.bridge)}
    assert clients == {"203.0.113.7", "192.0.2.44"}


async def test_a_slow_body_is_answered_408_when_the_request_deadline_passes(
        make_server: ServerFactory) -> None:
    running = await make_server({"limits": {"request_timeout_seconds": 1}})
    key = await running.create_key("k", ("query",))
    raw = await raw_exchange(running.url, partial_post(running.url, key), read_timeout=10)
    assert status_of(raw) == 408
    assert json.loads(body_of(raw))["code"] == "request_timeout"
    row = next(r for r in await audit_rows(running.bridge) if r["status"] == 408)
    assert row["key_name"] == "k" and row["detail"].startswith("no answer within")


async def test_a_query_past_the_request_deadline_is_stopped_and_frees_its_connection(
        make_server: ServerFactory) -> None:
    running = await make_server({"limits": {"request_timeout_seconds": 1, "query_timeout_seconds": 60}})
    key = await running.create_key("k", ("query", "sql"))
    status, body, _ = await running.post("/query", {"query": RUNAWAY_SQL}, key=key)
    assert (status, body["code"]) == (504, "request_timeout")
    # Every pooled reader answers again: the stopped statement did not keep running in the engine.
    results = await asyncio.wait_for(asyncio.gather(
        *(running.post("/query", INVENTORY, key=key) for _ in range(8))), timeout=20)
    assert [s for s, _, _ in results] == [200] * 8


async def test_concurrent_requests_per_key_are_capped_and_queued(make_server: ServerFactory) -> None:
    running = await make_server({"rate_limit": {"max_concurrent_per_key": 2},
                                 "limits": {"request_timeout_seconds": 3}})
    hog = await running.create_key("hog", ("query",))
    other = await running.create_key("other", ("query",))
    stuck = [asyncio.ensure_future(raw_exchange(running.url, partial_post(running.url, hog)))
             for _ in range(2)]
    await asyncio.sleep(0.5)  # both now hold the key's two slots, waiting for bodies that never come
    queued = asyncio.ensure_future(running.post("/query", INVENTORY, key=hog))
    await asyncio.sleep(0.3)
    assert (await running.post("/query", INVENTORY, key=other))[0] == 200  # another key does not wait
    assert not queued.done()  # while the hog's third request waits for a free slot
    assert not any(task.done() for task in stuck)
    assert [status_of(raw) for raw in await asyncio.gather(*stuck)] == [408, 408]
    status, _, _ = await asyncio.wait_for(queued, timeout=10)
    assert status == 200  # ... and runs once one is free


async def test_past_the_queue_a_key_is_refused_at_once(make_server: ServerFactory) -> None:
    running = await make_server({"rate_limit": {"max_concurrent_per_key": 1},
                                 "limits": {"request_timeout_seconds": 4}})
    hog = await running.create_key("hog", ("query",))
    # One slot plus a queue of four: five stalled requests fill both.
    stuck = [asyncio.ensure_future(raw_exchange(running.url, partial_post(running.url, hog)))
             for _ in range(5)]
    await asyncio.sleep(0.7)
    status, body, response = await running.post("/query", INVENTORY, key=hog)
    assert (status, body["code"]) == (429, "too_many_concurrent")
    assert response.headers["Retry-After"] == "1"
    await asyncio.gather(*stuck)
    rows = [r for r in await audit_rows(running.bridge) if r["error_code"] == "too_many_concurrent"]
    assert len(rows) == 1 and "in progress" in rows[0]["detail"]


async def test_a_connection_that_never_finishes_its_headers_is_closed(make_server: ServerFactory) -> None:
    running = await make_server({"limits": {"idle_timeout_seconds": 1}})
    raw = await raw_exchange(running.url, b"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: vb",
                             read_timeout=15)  # raises if still open by then (the default is an hour)
    assert raw == b""  # closed without an answer


@pytest.mark.parametrize("declared", [70_000, 10**9])
async def test_oversized_bodies_are_refused_before_they_are_read(make_server: ServerFactory,
                                                                 declared: int) -> None:
    running = await make_server()
    key = await running.create_key("k", ("query",))
    raw = await raw_exchange(running.url, partial_post(running.url, key, declared=declared, sent=b"{"),
                             read_timeout=10)
    assert status_of(raw) == 413
    assert json.loads(body_of(raw))["code"] == "payload_too_large"


async def test_keyless_callers_get_one_bucket_per_address(make_server: ServerFactory) -> None:
    running = await make_server({"server": {"trust_forwarded_for": True},
                                 "rate_limit": {"requests": 5, "window_seconds": 60}})
    key = await running.create_key("k", ("query",))
    prober = {"X-Forwarded-For": "198.51.100.20"}

    async def health(headers: dict[str, str]) -> int:
        async with running.session.get(running.url + "/health", headers=headers) as response:
            return response.status

    statuses = [await health(prober) for _ in range(5)]
    statuses += [(await running.post("/query", INVENTORY, headers=prober))[0] for _ in range(2)]
    assert statuses == [200] * 5 + [429, 429]  # /health costs a database round trip: not unbounded
    # A key from the same address has its own bucket, and another keyless address is untouched.
    assert (await running.post("/query", INVENTORY, key=key, headers=prober))[0] == 200
    assert await health({"X-Forwarded-For": "198.51.100.21"}) == 200
    row = next(r for r in await audit_rows(running.bridge) if r["status"] == 429)
    assert row["client"] == "198.51.100.20" and "without a key" in row["detail"]


async def test_an_mcp_event_stream_outlives_the_request_deadline(make_server: ServerFactory) -> None:
    running = await make_server({"limits": {"request_timeout_seconds": 1}})
    key = await running.create_key("k", ("query",))
    headers = {"x-api-key": key, "Accept": "application/json, text/event-stream"}
    async with running.session.post(running.url + "/mcp", headers=headers, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}) as response:
        assert response.status == 200
        session = {"Mcp-Session-Id": response.headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-06-18"}
    async with running.session.post(running.url + "/mcp", headers={**headers, **session}, json={
            "jsonrpc": "2.0", "method": "notifications/initialized"}) as response:
        assert response.status == 202
    async with running.session.get(running.url + "/mcp", headers={**headers, **session}) as stream:
        assert stream.status == 200 and stream.content_type == "text/event-stream"
        await asyncio.sleep(2.5)  # well past the 1 s deadline that bounds ordinary requests
        await running.bridge.reload_catalog()  # the server now has something to say on the stream
        received = b""
        while b"list_changed" not in received:
            line = await asyncio.wait_for(stream.content.readline(), 10)
            assert line, f"the stream was closed; got {received!r}"
            received += line
