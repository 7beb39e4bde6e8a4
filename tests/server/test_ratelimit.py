"""The per-key concurrency cap on its own (places, the queue behind them, refusals, bounded memory), and
the token leases a worker takes from a shared bucket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server import ratelimit
from server.ratelimit import ConcurrencyLimiter, RateLimiter, TooManyInFlight
from server.sharedstate import SharedState, Table


class CountedTable:
    """A shared table that counts the locked updates made through it."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.updates = 0

    def update(self, key: str, change: Any) -> Any:
        self.updates += 1
        return self.table.update(key, change)

    def get(self, key: str) -> Any:
        return self.table.get(key)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_busy_key_takes_the_shared_lock_once_per_lease(shared: SharedState) -> None:
    table = CountedTable(shared.tables["rate"])
    limiter = RateLimiter(6400, 1e9, table, leases=True)  # no refill worth counting
    decisions = [limiter.check("busy") for _ in range(99)]
    assert all(d.allowed for d in decisions)
    assert table.updates == 3  # each locked take is one token and 32 ahead
    remaining = [d.remaining for d in decisions]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 6400 - 99
    assert table.get("busy")[0] == pytest.approx(6400 - 99, abs=0.01)  # the shared bucket has given out exactly what was spent


def test_keys_below_64_tokens_never_lease_and_stay_exact(shared: SharedState) -> None:
    table = CountedTable(shared.tables["rate"])
    limiter = RateLimiter(63, 1e9, table, leases=True)
    assert [limiter.check("small").allowed for _ in range(64)] == [True] * 63 + [False]
    assert table.updates == 64


def test_a_limiter_without_leases_takes_the_lock_every_time(shared: SharedState) -> None:
    table = CountedTable(shared.tables["rate"])
    limiter = RateLimiter(6400, 1e9, table)
    for _ in range(10):
        limiter.check("busy")
    assert table.updates == 10


def test_leases_stop_below_half_the_bucket_so_the_last_tokens_go_one_by_one(shared: SharedState) -> None:
    table = CountedTable(shared.tables["rate"])
    limiter = RateLimiter(640, 1e9, table, leases=True)  # leases of 10
    assert all(limiter.check("k").allowed for _ in range(640))
    assert not limiter.check("k").allowed
    # 29 leased takes (11 tokens each) bring the bucket to 321: not enough for another lease above half
    assert table.updates == 29 + 321 + 1


def test_an_expired_lease_gives_its_leftover_back(shared: SharedState, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(ratelimit, "time", clock)
    limiter = RateLimiter(6400, 1e9, shared.tables["rate"], leases=True)
    limiter.check("k")
    assert shared.tables["rate"].get("k")[0] == 6400 - 33
    clock.now += RateLimiter.LEASE_SECONDS + 0.5
    limiter.check("k")  # the 32 unspent come back, then one and 32 more go
    assert shared.tables["rate"].get("k")[0] == pytest.approx(6400 - 34, abs=0.01)


def test_another_workers_lease_holds_tokens_out_of_the_bucket_until_spent(shared: SharedState) -> None:
    """Two limiters on one shared table are two workers: together they never admit more than it holds."""
    first = RateLimiter(640, 1e9, shared.tables["rate"], leases=True)
    second = RateLimiter(640, 1e9, shared.tables["rate"], leases=True)
    assert first.check("k").allowed  # and 10 leased
    admitted = sum(second.check("k").allowed for _ in range(700))
    assert admitted == 640 - 11  # refused while the first still holds its lease
    assert sum(first.check("k").allowed for _ in range(20)) == 10


async def test_a_key_gets_its_places_then_waits_then_is_refused() -> None:
    limiter = ConcurrencyLimiter(2, max_waiting=1)
    release = asyncio.Event()
    running: list[str] = []

    async def call(name: str) -> None:
        async with limiter.slot("k"):
            running.append(name)
            await release.wait()

    first = [asyncio.ensure_future(call(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0.01)
    assert running == ["a", "b"] and limiter.users("k") == 3
    with pytest.raises(TooManyInFlight):
        await call("d")
    async with limiter.slot("other"):  # another key's place is its own
        assert limiter.users("other") == 1
    release.set()
    await asyncio.gather(*first)
    assert running == ["a", "b", "c"] and limiter.users("k") == 0


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    limiter = ConcurrencyLimiter(1, max_waiting=1)
    async with limiter.slot("k"):
        waiter = asyncio.ensure_future(limiter.slot("k").__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.users("k") == 1
    assert limiter.users("k") == 0
    async with limiter.slot("k"):
        assert limiter.users("k") == 1


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancelled-then-freed", "handed-then-cancelled"])
async def test_a_waiter_cancelled_as_the_place_frees_up_leaves_it_to_the_next(cancel_first: bool) -> None:
    """Cancelled before the release (the release skips it) or just after it was handed the place (it
    passes the place on): either way the next waiter gets it and the count stays right."""
    limiter = ConcurrencyLimiter(1, max_waiting=2)
    holder = limiter.slot("k")
    await holder.__aenter__()
    first = asyncio.ensure_future(limiter.slot("k").__aenter__())
    second = asyncio.ensure_future(limiter.slot("k").__aenter__())
    await asyncio.sleep(0.01)
    if cancel_first:
        first.cancel()
    await holder.__aexit__(None, None, None)
    if not cancel_first:
        first.cancel()  # the place is already its own, but it has not run yet
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)
    assert limiter.users("k") == 1


async def test_idle_keys_are_forgotten_once_there_are_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "_MAX_IDLE_KEYS", 10)
    limiter = ConcurrencyLimiter(1)
    async with limiter.slot("busy"):
        for n in range(50):
            async with limiter.slot(f"key-{n}"):
                pass
        assert len(limiter._keys) <= 11 and limiter.users("busy") == 1
    assert limiter.users("busy") == 0


def test_a_changed_limit_returns_the_lease_taken_under_the_old_one(shared: SharedState) -> None:
    limiter = RateLimiter(6400, 1e9, shared.tables["rate"], leases=True)
    limiter.check("k")  # the key's own limit is the default here: one token and 32 ahead
    decision = limiter.check("k", 12800)  # its limit raised: the 32 go back before the new take
    assert decision.allowed and decision.limit == 12800
    # 6367 + 32 returned - 1 taken, and no new lease: the bucket is below half of the new limit
    assert shared.tables["rate"].get("k")[0] == pytest.approx(6398, abs=0.01)
