"""The limiters' tables: the shared-memory one against real worker processes, and its fixed-slot reuse."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from server import sharedstate
from server.config import Config
from server.paths import resolve_paths
from server.ratelimit import AuthThrottle, RateLimiter
from server.sharedstate import PROBE, MemoryTable, SharedState
from server.workers import Plan, Supervisor

SPAWN = multiprocessing.get_context("spawn")


def _spend(state: SharedState, key: str, times: int, answers: Any) -> None:
    """In another process: take `times` tokens from the key's bucket, fail auth once, bump the generation."""
    limiter = RateLimiter(10, 60, state.tables["rate"])
    answers.put([limiter.check(key).allowed for _ in range(times)])
    AuthThrottle(3, table=state.tables["auth"]).failure("203.0.113.7")
    state.generation.bump()
    state.close()


def test_a_bucket_and_a_failure_count_are_shared_with_another_process(shared: SharedState) -> None:
    answers = SPAWN.SimpleQueue()
    child = SPAWN.Process(target=_spend, args=(shared, "key-a", 7, answers))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and answers.get() == [True] * 7
    here = RateLimiter(10, 60, shared.tables["rate"])
    assert [here.check("key-a").allowed for _ in range(4)] == [True, True, True, False]
    assert here.check("key-b").remaining == 9  # another key has its own bucket
    throttle = AuthThrottle(3, table=shared.tables["auth"])
    assert [throttle.failure("203.0.113.7") for _ in range(3)] == [0.0, 0.0, 30.0]  # 1 + 3 > 3 allowed
    assert throttle.blocked_for("203.0.113.7") > 29
    assert shared.generation.value() == 1


def test_workers_taking_tokens_at_once_never_overspend(shared: SharedState) -> None:
    answers = SPAWN.SimpleQueue()
    children = [SPAWN.Process(target=_spend, args=(shared, "hot", 8, answers)) for _ in range(3)]
    for child in children:
        child.start()
    taken = [allowed for _ in children for allowed in answers.get()]
    for child in children:
        child.join(30)
    assert taken.count(True) == 10 and len(taken) == 24
    assert shared.generation.value() == 3


def test_a_full_probe_window_reuses_the_slot_idle_longest(monkeypatch: pytest.MonkeyPatch) -> None:
    state = SharedState(slots=1)  # one home slot: every key shares the same PROBE slots
    clock = [100.0]
    monkeypatch.setattr(sharedstate.time, "monotonic", lambda: clock[0])
    try:
        table = state.tables["rate"]
        for i in range(PROBE):
            clock[0] += 1
            table.update(f"k{i}", lambda row, i=i: ((float(i), 0.0, 0.0, 0.0), None))
        clock[0] += 1
        table.update("k0", lambda row: (row, None))  # k0 used again: k1 is now the idle-longest
        assert table.get("k0") == (0.0, 0.0, 0.0, 0.0)
        table.update("new", lambda row: ((9.0, 9.0, 9.0, 9.0), row))
        assert table.get("new") == (9.0, 9.0, 9.0, 9.0)
        assert table.get("k1") is None
        assert all(table.get(f"k{i}") is not None for i in (0, *range(2, PROBE)))
        table.update("new", lambda row: (None, None))  # None deletes
        assert table.get("new") is None
    finally:
        state.close()


def _churn(state: SharedState, stop: Any) -> None:
    """In another process: keep rewriting, evicting and deleting rows of keys that share one probe
    window, each key's row holding its own number in every field."""
    table = state.tables["auth"]
    i = 0
    while not stop.is_set():
        key = i % (PROBE + 3)  # more keys than slots: rows are evicted and their slots reused
        value = float(key)
        new_row = None if i % 7 == 0 else (value,) * 4
        table.update(f"k{key}", lambda row, r=new_row: (r, None))
        i += 1
    state.close()


def test_reads_without_the_lock_never_see_half_a_write() -> None:
    state = SharedState(slots=1)
    stop = SPAWN.Event()
    writer = SPAWN.Process(target=_churn, args=(state, stop))
    writer.start()
    try:
        table = state.tables["auth"]
        seen = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for key in range(PROBE + 3):
                row = table.get(f"k{key}")
                assert row is None or row == (float(key),) * 4, (key, row)
                seen += row is not None
        assert seen > 1000  # the reads did meet the writer's rows
    finally:
        stop.set()
        writer.join(30)
        state.close()


def test_a_write_left_half_done_by_a_dead_worker_is_mended_by_the_next() -> None:
    state = SharedState(slots=4)
    try:
        table = state.tables["auth"]
        table.update("a", lambda row: ((1.0, 1.0, 1.0, 1.0), None))
        sharedstate._SEQUENCE.pack_into(table._buf, 0, 41)  # odd: as a worker killed mid-write leaves it
        assert table.get("a") == (1.0, 1.0, 1.0, 1.0)  # read under the lock instead
        table.update("a", lambda row: ((2.0, 2.0, 2.0, 2.0), None))
        assert sharedstate._SEQUENCE.unpack_from(table._buf)[0] % 2 == 0
        assert table.get("a") == (2.0, 2.0, 2.0, 2.0)
    finally:
        state.close()


def test_the_memory_table_forgets_idle_rows_only_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(sharedstate.time, "monotonic", lambda: clock[0])
    table = MemoryTable(keep_seconds=60, max_rows=3)
    for name in ("old", "mid", "new"):
        table.update(name, lambda row: ((1.0, 0.0, 0.0, 0.0), None))
        clock[0] += 20
    assert len(table) == 3
    table.update("fourth", lambda row: ((1.0, 0.0, 0.0, 0.0), None))  # at 60 s: only "old" idle that long
    assert table.get("old") is None and len(table) == 3


def test_the_generation_is_local_without_shared_memory() -> None:
    counter = sharedstate.Generation()
    counter.bump()
    counter.bump()
    assert counter.value() == 2


def _hold(state: SharedState, inside: Any) -> None:
    """In another process: enter the shared lock (a table update) and stay inside, as a stalled worker."""
    def stall(row: Any) -> tuple[None, None]:
        inside.set()
        time.sleep(120)
        return None, None

    state.tables["rate"].update("hot", stall)


def _exit_at_once(state: SharedState) -> None:
    state.close()


def test_the_supervisor_frees_the_shared_lock_only_from_a_worker_that_died_inside(shared: SharedState,
                                                                                  tmp_path: Path) -> None:
    supervisor = Supervisor(Plan(resolve_paths(tmp_path / "home"), Config(), "", [], 2), [], shared)
    inside = SPAWN.Event()
    holder = SPAWN.Process(target=_hold, args=(shared, inside))
    holder.start()
    other = SPAWN.Process(target=_exit_at_once, args=(shared,))
    other.start()
    try:
        assert inside.wait(30)
        other.join(30)
        assert other.exitcode == 0
        supervisor._free_lock(other.pid)  # another worker died; the holder is alive, only slow
        assert shared.guard.holder() == holder.pid
        assert not shared.lock.acquire(timeout=1.5)  # still held: no two workers inside at once
        os.kill(holder.pid, signal.SIGKILL)  # now the holder dies inside the lock
        holder.join(30)
        supervisor._free_lock(holder.pid)
        assert shared.guard.holder() == 0
        assert shared.lock.acquire(timeout=1.5)
        shared.lock.release()
        assert shared.tables["rate"].get("hot") is None  # the other workers carry on
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join(30)
