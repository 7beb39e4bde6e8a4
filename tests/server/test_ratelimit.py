"""The per-key concurrency cap on its own: places, the queue behind them, refusals, bounded memory."""

from __future__ import annotations

import asyncio

import pytest

from server import ratelimit
from server.ratelimit import ConcurrencyLimiter, TooManyInFlight


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
