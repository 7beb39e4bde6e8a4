"""The deadline watchdog behaves like asyncio.timeout(): late work is cancelled and reads as TimeoutError."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from server.http.deadline import TICK_SECONDS, Deadlines


async def test_work_past_its_limit_is_stopped_with_timeout_error_in_time() -> None:
    deadlines = Deadlines()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with deadlines.limit(0.2):
            await asyncio.sleep(5)
    assert 0.2 <= time.monotonic() - started < 0.2 + TICK_SECONDS + 0.5
    assert not deadlines._running
    await deadlines.stop()


async def test_work_within_its_limit_is_untouched_and_forgotten() -> None:
    deadlines = Deadlines()
    async with deadlines.limit(5) as deadline:
        await asyncio.sleep(0.01)
    assert not deadline.expired and not deadlines._running
    await asyncio.sleep(2 * TICK_SECONDS)  # the watchdog finds nothing to cancel later
    assert not deadline.expired
    await deadlines.stop()


async def test_a_lifted_limit_lets_a_stream_run_on() -> None:
    deadlines = Deadlines()
    async with deadlines.limit(0.1) as deadline:
        deadline.lift()
        await asyncio.sleep(0.1 + 3 * TICK_SECONDS)
    assert not deadline.expired
    await deadlines.stop()


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    deadlines = Deadlines()

    async def work() -> None:
        async with deadlines.limit(30):
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._running
    await deadlines.stop()


async def test_each_request_has_its_own_limit() -> None:
    deadlines = Deadlines()

    async def work(limit: float, duration: float) -> str:
        try:
            async with deadlines.limit(limit):
                await asyncio.sleep(duration)
        except TimeoutError:
            return "timed out"
        return "done"

    assert await asyncio.gather(work(0.1, 1), work(2, 0.3), work(0.3, 0.05)) == ["timed out", "done", "done"]
    await deadlines.stop()


async def test_a_cancel_the_work_swallowed_is_still_taken_back() -> None:
    """As with asyncio.timeout(): once the limit has fired, the task is not left marked as cancelling."""
    deadlines = Deadlines()
    async with deadlines.limit(0.05) as deadline:
        with contextlib.suppress(asyncio.CancelledError):  # work that swallows the cancellation
            await asyncio.sleep(5)
    task = asyncio.current_task()
    assert deadline.expired and task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # the task is usable again: a later await is not cancelled
    await deadlines.stop()


async def test_the_watchdog_sleeps_while_nothing_runs() -> None:
    deadlines = Deadlines()
    async with deadlines.limit(5):
        pass
    await asyncio.sleep(3 * TICK_SECONDS)
    assert deadlines._task is not None and not deadlines._task.done()
    assert deadlines._work.is_set() is False  # waiting for the next request, not ticking
    with pytest.raises(TimeoutError):
        async with deadlines.limit(0.05):
            await asyncio.sleep(5)
    await deadlines.stop()
