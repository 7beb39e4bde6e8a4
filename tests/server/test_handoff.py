"""The waiting queue the concurrency cap, the SQLite readers and the PostgreSQL pool share."""

from __future__ import annotations

import asyncio

import pytest

from server.handoff import Handoff


async def test_first_come_first_served_and_false_when_nobody_waits() -> None:
    handoff: Handoff[str] = Handoff()
    assert not handoff.give("nobody")
    first = asyncio.ensure_future(handoff.wait(pytest.fail))
    second = asyncio.ensure_future(handoff.wait(pytest.fail))
    await asyncio.sleep(0)
    assert len(handoff) == 2
    assert handoff.give("a") and handoff.give("b")
    assert (await first, await second) == ("a", "b") and len(handoff) == 0


async def test_a_waiter_cancelled_as_it_is_handed_something_passes_it_on() -> None:
    handoff: Handoff[str] = Handoff()
    passed: list[str] = []
    waiter = asyncio.ensure_future(handoff.wait(passed.append))
    await asyncio.sleep(0)
    handoff.give("reader")
    waiter.cancel()  # handed over, but cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert passed == ["reader"]


async def test_a_waiter_cancelled_before_anything_came_leaves_the_queue() -> None:
    handoff: Handoff[str] = Handoff()
    waiter = asyncio.ensure_future(handoff.wait(pytest.fail))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(handoff) == 0 and not handoff.give("x")


async def test_failed_waits_raise_the_error_and_pass_nothing_on() -> None:
    handoff: Handoff[str] = Handoff()
    waiters = [asyncio.ensure_future(handoff.wait(pytest.fail)) for _ in range(2)]
    await asyncio.sleep(0)
    handoff.fail(lambda: ConnectionError("closed"))
    for waiter in waiters:
        with pytest.raises(ConnectionError, match="closed"):
            await waiter
    assert len(handoff) == 0


# ---- Shares: an owner's share of a pool (server.handoff.Shares) -----------------------------------------
async def test_an_owner_at_its_share_waits_for_its_own_place_and_others_pass() -> None:
    from server.handoff import Shares

    shares: Shares[str] = Shares(2)  # no capacity given: never more than the share
    assert shares.take_now("a") and shares.take_now("a")
    assert not shares.take_now("a")
    assert shares.take_now("b")  # another owner is not held up by a's share
    third = asyncio.ensure_future(shares.take("a"))
    await asyncio.sleep(0)
    assert not third.done() and shares.held("a") == 2
    assert not shares.take_now("a")  # no jumping the queue of a's own waiters
    shares.give_back("a")  # the place goes straight to a's waiter
    await third
    assert shares.held("a") == 2
    shares.give_back("a")
    shares.give_back("a")
    shares.give_back("b")
    assert shares.held("a") == shares.held("b") == 0


async def test_beyond_its_share_an_owner_takes_places_only_while_one_stays_free() -> None:
    from server.handoff import Shares

    shares: Shares[str] = Shares(5, capacity=10)
    for _ in range(9):
        assert shares.take_now("flood")
    assert not shares.take_now("flood")  # the tenth would leave nothing for anyone else
    assert shares.take_now("other")  # ... which another owner gets at once
    waiting = asyncio.ensure_future(shares.take("flood"))
    second = asyncio.ensure_future(shares.take("other"))  # under its share: not held up
    await asyncio.sleep(0)
    assert second.done() and not waiting.done()
    shares.give_back("flood")  # 8 + 2 held: one more for flood would leave none free
    await asyncio.sleep(0)
    assert not waiting.done()
    shares.give_back("other")
    shares.give_back("other")  # now 8 held in all: flood may take its ninth again
    await waiting
    assert shares.held("flood") == 9 and shares.held("other") == 0


async def test_a_wait_for_a_share_times_out_and_a_cancelled_waiter_passes_its_place_on() -> None:
    from server.handoff import Shares

    shares: Shares[str] = Shares(1)
    assert shares.take_now("a")
    with pytest.raises(TimeoutError):
        await shares.take("a", wait=0.05)
    assert shares.held("a") == 1 and shares.take_now("a") is False
    waiter = asyncio.ensure_future(shares.take("a"))
    second = asyncio.ensure_future(shares.take("a"))
    await asyncio.sleep(0)
    shares.give_back("a")  # handed to `waiter`, which is cancelled before it runs
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await second  # the place went on to the next waiter
    shares.give_back("a")
    assert shares.held("a") == 0 and shares.take_now("a")


def test_a_share_is_at_least_one() -> None:
    from server.handoff import Shares

    assert Shares(0).share == 1 and Shares(1).share == 1 and Shares(5).share == 5
