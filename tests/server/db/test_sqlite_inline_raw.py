"""Raw SQL tried on the event loop (server/db/sqlite.py) under limits that keep each SQLite instruction
short, with a watchdog thread for an instruction the progress handler cannot reach; whatever needs more
runs on a reader thread and still answers in full."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from server.db.sqlite import SqliteDatabase
from server.db.watchdog import Watchdog
from tests.conftest import RunningServer

RAW = "SELECT name, account_status FROM customers WHERE phone = $1"


async def test_raw_reads_beyond_the_loop_limits_move_to_a_thread_and_answer_in_full(server: RunningServer
                                                                                     ) -> None:
    analyst = server.keys["analyst"]
    cases = [
        # a value larger than the loop's 4 KB: refused there (SQLITE_TOOBIG), answered from a thread
        ({"query": "SELECT length(hex(zeroblob(3000))) AS n, hex(zeroblob(3000)) AS v"}, 6000),
        # a LIKE pattern longer than the loop's 64 characters
        ({"query": "SELECT count(*) AS n FROM customers WHERE name LIKE $1", "args": ["%" * 100]}, None),
        # SQL text longer than the loop's limit
        ({"query": "SELECT 1 AS n " + " " * 6000}, 1),
    ]
    for body, expected in cases:
        status, answer, _ = await server.post("/query", body, key=analyst)
        assert status == 200, answer
        if expected is not None:
            assert answer["data"][0]["n"] == expected, answer
    status, answer, _ = await server.post("/query", {"query": RAW, "args": ["+15558594448"]}, key=analyst)
    assert status == 200 and answer["data"] == [{"name": "Ava Martin", "account_status": "active"}]
    # and the loop's tighter limits are gone when the same reader serves a catalog read or raw SQL again
    status, answer, _ = await server.post("/query", {"query": "SELECT length(hex(zeroblob(3000))) AS n"},
                                          key=analyst)
    assert status == 200 and answer["data"] == [{"n": 6000}]


def test_the_watchdog_interrupts_an_instruction_the_progress_handler_never_reaches(tmp_path: Path) -> None:
    """A function call is one instruction: a progress handler every 2,000 instructions would let 100 calls
    of 20 ms run for 2 s; the watchdog stops the statement within a few of them."""
    conn = sqlite3.connect(tmp_path / "w.db", check_same_thread=False)
    conn.set_progress_handler(lambda: 0, 2000)
    conn.create_function("slow", 1, lambda n: time.sleep(0.02) or n)
    sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n<100) SELECT sum(slow(n)) FROM r"
    watchdog = Watchdog()
    try:
        started = time.monotonic()
        watchdog.watch(conn, started + 0.015)
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            conn.execute(sql).fetchall()
        took = time.monotonic() - started
        watchdog.done()
        assert took < 0.5, took
        # not watched: the same statement runs to its end
        assert conn.execute(sql.replace("n<100", "n<5")).fetchone() == (15,)
    finally:
        watchdog.stop()
        conn.close()
    assert not [t for t in threading.enumerate() if t.name == "sqlite-watchdog" and t.is_alive()]


def test_the_watchdog_stops_whenever_it_is_stopped() -> None:
    """stop() may come just as the thread goes idle (it clears its Event then): the stop must not be lost
    (it once was, and closing the database hung on the join)."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    for round_ in range(100):
        watchdog = Watchdog(step=0.002, idle_after=0.001)
        watchdog.watch(conn, time.monotonic() + 60)  # a statement watched, then done: the thread polls
        watchdog.done()
        time.sleep((round_ % 5) * 0.001)
        stopper = threading.Thread(target=watchdog.stop, daemon=True)
        stopper.start()
        stopper.join(timeout=5)
        assert not stopper.is_alive(), f"stop() hung in round {round_}"
    conn.close()


def test_a_statement_watched_as_the_watchdog_goes_idle_is_still_interrupted() -> None:
    """watch() wakes the thread only when it has gone idle (a flag it reads, not the Event's lock): a
    watch that comes at any point of the thread's way to sleep must still be seen."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.create_function("slow", 1, lambda n: time.sleep(0.01) or n)
    sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n<300) SELECT sum(slow(n)) FROM r"
    watchdog = Watchdog(step=0.002, idle_after=0.001)
    try:
        for round_ in range(40):
            time.sleep((round_ % 8) * 0.0005)  # the thread is awake, on its way to sleep, or asleep
            started = time.monotonic()
            watchdog.watch(conn, started + 0.005)
            with pytest.raises(sqlite3.OperationalError, match="interrupted"):
                conn.execute(sql).fetchall()
            watchdog.done()
            assert time.monotonic() - started < 1.0, f"not interrupted in round {round_}"
    finally:
        watchdog.stop()
        conn.close()


async def test_no_raw_sql_on_the_loop_for_a_file_with_virtual_tables(tmp_path: Path) -> None:
    path = tmp_path / "fts.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE VIRTUAL TABLE notes USING fts5(body)")
        conn.execute("INSERT INTO notes VALUES ('blue jacket in stock')")
    db = SqliteDatabase(path)
    await db.open()
    try:
        assert db._watchdog is None
        rows = await db.read("SELECT length(hex(zeroblob(3000))) AS n", {}, max_rows=10, timeout=5.0,
                             raw=True, max_bytes=100_000)
        assert rows.rows == [{"n": 6000}]  # raw SQL still answers, from a reader thread
    finally:
        await db.close()
