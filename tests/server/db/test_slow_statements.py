"""No statement stalls other callers (issue 15, item 1), through a real server on a real port.

A raw SQL statement whose single steps are huge (each row's `replace` works on a 100 MB string, about half a
second per step) must neither hold up /health or another key's lookup, nor outlive the time limit by more
than about a second: SQLite's `interrupt()` from a loop timer and PostgreSQL's statement_timeout do that,
not a count of instructions. Timings are generous on purpose (a shared 2-core machine): the checks are
that the probes answer well before the statement is cut, and that the statement is cut near its limit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from server.paths import Paths
from tests.conftest import RunningServer
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401

# The review's statement: 60 steps of replace() over a 100 MB string; it ran 34 s on the event loop.
HUGE = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n<60), "
        "b(s) AS (SELECT hex(zeroblob(50000000))) SELECT sum(length(replace(s,'0','1'))) x FROM r, b")
FIND = {"name": "find_customer_by_phone", "params": {"phone": "+15558594448"}}
LIMIT = 2.0  # query_timeout_seconds in these tests
LATE = 1.5  # how far past the limit a cut statement may answer (the issue: within a second; slack for load)
PROMPT = 1.0  # a probe answered in less than this is "well before" a statement that runs LIMIT seconds


async def timed(coroutine: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = await coroutine
    return time.monotonic() - started, result


async def probe_while_running(running: RunningServer, statement: asyncio.Task[Any], other_key: str,
                              rounds: int = 4) -> list[float]:
    """/health and another key's catalog lookup, several times while `statement` runs; their times."""
    waits = []
    for _ in range(rounds):
        took, (status, body, _) = await timed(running.get("/health"))
        assert status == 200 and body["status"] == "healthy", body
        waits.append(took)
        took, (status, body, _) = await timed(running.post("/query", FIND, key=other_key))
        assert status == 200 and body["count"] == 1, body
        waits.append(took)
    assert not statement.done(), "the probes should have been answered while the statement still ran"
    return waits


async def run_and_probe(running: RunningServer, statement: dict[str, Any]) -> tuple[float, int, Any, list[float]]:
    """Fire `statement` with one key, probe /health and another key's lookup meanwhile; (seconds until the
    statement answered, its status, its body, the probes' times)."""
    analyst = running.keys.get("analyst") or await running.create_key("analyst", ("query", "sql"))
    reader = running.keys.get("reader") or await running.create_key("reader", ("query",))
    await running.post("/query", FIND, key=reader)  # warm: the first call opens what it needs
    started = time.monotonic()
    task = asyncio.create_task(running.post("/query", statement, key=analyst))
    await asyncio.sleep(0.3)
    waits = await probe_while_running(running, task, reader)
    status, body, _ = await task
    return time.monotonic() - started, status, body, waits


async def test_sqlite_a_statement_of_huge_steps_stalls_nobody_and_is_cut_at_the_limit(make_server) -> None:
    # values up to 256 MB allowed here, so the statement really runs (by default SQLite refuses its
    # 100 MB string at once: test_answer_size)
    running: RunningServer = await make_server({
        "limits": {"query_timeout_seconds": LIMIT, "max_response_bytes": 256 * 1024 * 1024},
        "rate_limit": {"requests": 10_000}})
    took, status, body, waits = await run_and_probe(running, {"query": HUGE})
    assert status == 504 and body["code"] == "query_timeout", body
    assert LIMIT - 0.1 < took < LIMIT + LATE, took
    assert max(waits) < PROMPT, waits
    # the reader went back to the pool in working order
    status, body, _ = await running.post("/query", {"query": "SELECT 1 AS one"}, key=running.keys["analyst"])
    assert status == 200 and body["data"] == [{"one": 1}]


async def test_sqlite_by_default_the_huge_value_is_refused_at_once(make_server) -> None:
    running: RunningServer = await make_server({"limits": {"query_timeout_seconds": LIMIT}})
    key = await running.create_key("analyst", ("query", "sql"))
    took, (status, body, _) = await timed(running.post("/query", {"query": HUGE}, key=key))
    assert status == 400 and body["code"] == "response_too_large", body
    assert took < LIMIT, took


ENDLESS_TOOL = """
[tools.count_forever]
kind = "query"
description = "A catalog query that never ends (for the test)."
sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c WHERE x > :floor"

[tools.count_forever.params.floor]
type = "integer"
"""


async def test_sqlite_a_slow_catalog_read_moves_off_the_loop_and_is_cut_too(make_server, home: Paths) -> None:
    """A catalog read starts on the loop (lookups take microseconds) and moves to a reader thread after
    a couple of milliseconds, where the same timer cuts it; meanwhile everyone else is served."""
    home.tools_file.write_text(home.tools_file.read_text() + ENDLESS_TOOL)
    running: RunningServer = await make_server({"limits": {"query_timeout_seconds": LIMIT},
                                                "rate_limit": {"requests": 10_000}})
    took, status, body, waits = await run_and_probe(
        running, {"name": "count_forever", "params": {"floor": 0}})
    assert status == 504 and body["code"] == "query_timeout", body
    assert LIMIT - 0.1 < took < LIMIT + LATE, took
    assert max(waits) < PROMPT, waits


async def test_postgres_sleep_and_heavy_series_stall_nobody_and_are_cut_at_the_limit(
        make_server, pg_server: PgServer, pg_db: str) -> None:  # noqa: F811
    running: RunningServer = await make_server({"limits": {"query_timeout_seconds": LIMIT},
                                                "rate_limit": {"requests": 10_000}},
                                               database_url=pg_server.url(pg_db))
    for statement in ({"query": "SELECT pg_sleep(30) AS slept"},
                      {"query": "SELECT sum(x) AS total FROM (SELECT generate_series(1, 10000000000) AS x) s"}):
        took, status, body, waits = await run_and_probe(running, statement)
        assert status == 504 and body["code"] == "query_timeout", (statement, body)
        assert LIMIT - 0.1 < took < LIMIT + LATE, (statement, took)
        assert max(waits) < PROMPT, (statement, waits)
    # nothing of either statement is left running in the database
    rows = await pg_server.admin("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 "
                                 "AND state = 'active' AND query LIKE '%generate_series%' "
                                 "AND query NOT LIKE '%pg_stat_activity%'", pg_db)
    assert rows[0]["n"] == 0
