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
