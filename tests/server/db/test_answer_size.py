"""Bounded answers (issue 15, item 2): `[limits] max_response_bytes` (default 5 MB), on REST and MCP.

An answer that would exceed it is refused with 400 `response_too_large` (over MCP: a tool error result),
and it is found while the rows arrive: the server's memory grows by far less than the answer's size.
Memory is read from /proc/self/status (the server runs in this process, on its own thread): the peak
(VmHWM, reset through /proc/self/clear_refs) against the resident size before the call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import RunningServer
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401
from tests.unavailable import unavailable

MB = 1024 * 1024
ROWS_OF_300_KB = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) "
                  "SELECT n, hex(randomblob(150000)) AS v FROM r")
ONE_HUGE_VALUE = "SELECT hex(randomblob(100000000)) AS v"
GROWTH = 120 * MB  # the answers below are 200 to 400 MB; the server may grow by a small part of that
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "size-test", "version": "1"}}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


class PeakMemory:
    """How far this process's resident memory rose above where it was, while the block ran."""

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from now
        except OSError:
            unavailable("cannot reset the peak resident size here (/proc/self/clear_refs)")
        self.before = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.growth = _status_kb("VmHWM") - self.before


async def rest(running: RunningServer, key: str, sql: str, args: list[Any] | None = None) -> tuple[int, Any]:
    status, body, _ = await running.post("/query", {"query": sql, "args": args or []}, key=key)
    return status, body


async def mcp_run_sql(running: RunningServer, key: str, sql: str, args: list[Any] | None = None
                      ) -> tuple[int, Any, int]:
    """tools/call run_sql with the 2026-07-28 per-request envelope; (status, JSON-RPC payload, body bytes)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "run_sql", "arguments": {"query": sql, "args": args or []}, "_meta": META}}
    headers = {"Content-Type": "application/json", "x-api-key": key,
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": "tools/call", "Mcp-Name": "run_sql"}
    async with running.session.post(running.url + "/mcp", data=json.dumps(body), headers=headers) as response:
        raw = await response.read()
        return response.status, json.loads(raw), len(raw)


def assert_too_large(status: int, body: Any) -> None:
    assert status == 400, body
    assert body["success"] is False and body["code"] == "response_too_large", body
    assert "fewer rows or columns" in body["error"] and "max_response_bytes" in body["error"], body


def assert_mcp_too_large(status: int, payload: Any) -> None:
    assert status == 200, payload
    result = payload["result"]
    assert result["isError"] is True, result
    assert "fewer rows or columns" in result["content"][0]["text"], result


async def test_sqlite_1000_rows_of_300_kb_are_refused_while_they_arrive(make_server) -> None:
    running: RunningServer = await make_server({"limits": {"query_timeout_seconds": 20}})
    key = await running.create_key("analyst", ("query", "sql"))
    await rest(running, key, "SELECT 1")  # warm
    with PeakMemory() as rest_memory:
        status, body = await rest(running, key, ROWS_OF_300_KB)
    assert_too_large(status, body)
    with PeakMemory() as mcp_memory:
        status, payload, _ = await mcp_run_sql(running, key, ROWS_OF_300_KB)
    assert_mcp_too_large(status, payload)
    assert rest_memory.growth < GROWTH and mcp_memory.growth < GROWTH, (rest_memory.growth, mcp_memory.growth)


async def test_sqlite_a_single_huge_value_is_refused_by_sqlite_itself(make_server) -> None:
    running: RunningServer = await make_server({"limits": {"query_timeout_seconds": 20}})
    key = await running.create_key("analyst", ("query", "sql"))
    await rest(running, key, "SELECT 1")
    with PeakMemory() as memory:
        status, body = await rest(running, key, ONE_HUGE_VALUE)
    assert_too_large(status, body)
    assert "one value" in body["error"]
    assert memory.growth < GROWTH, memory.growth
    status, payload, _ = await mcp_run_sql(running, key, ONE_HUGE_VALUE)
    assert_mcp_too_large(status, payload)


async def test_sqlite_an_answer_under_the_limit_is_served_and_the_limit_is_the_wire_size(make_server) -> None:
    """With a 1 MB limit: 600 KB of rows is served over REST; over MCP the same rows travel twice (as
    text and as structuredContent), 1.2 MB, and are refused. Half of that passes both."""
    running: RunningServer = await make_server({"limits": {"max_response_bytes": MB}})
    key = await running.create_key("analyst", ("query", "sql"))
    rows = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < $1) "
            "SELECT n, hex(randomblob(1000)) AS v FROM r")
    status, body = await rest(running, key, rows, [300])
    assert status == 200 and body["count"] == 300, body
    status, payload, _ = await mcp_run_sql(running, key, rows, [300])
    assert_mcp_too_large(status, payload)
    status, payload, size = await mcp_run_sql(running, key, rows, [150])
    assert status == 200 and payload["result"]["isError"] is False and size < MB
    status, body = await rest(running, key, rows, [600])
    assert_too_large(status, body)
    assert "1 MB" in body["error"]
    # catalog tools are held to the same limit (their answers here are small)
    status, body, _ = await running.post("/query", {"name": "find_customer_by_phone",
                                                    "params": {"phone": "+15558594448"}}, key=key)
    assert status == 200 and body["count"] == 1


async def test_postgres_a_400_mb_value_is_cut_off_after_a_few_mb(
        make_server, pg_server: PgServer, pg_db: str) -> None:  # noqa: F811
    running: RunningServer = await make_server({"limits": {"query_timeout_seconds": 30}},
                                               database_url=pg_server.url(pg_db))
    key = await running.create_key("analyst", ("query", "sql"))
    await rest(running, key, "SELECT 1")
    with PeakMemory() as memory:
        status, body = await rest(running, key, "SELECT repeat($1, 400000000) AS v", ["x"])
    assert_too_large(status, body)
    assert memory.growth < GROWTH, memory.growth
    with PeakMemory() as mcp_memory:
        status, payload, _ = await mcp_run_sql(running, key, "SELECT repeat($1, 400000000) AS v", ["x"])
    assert_mcp_too_large(status, payload)
    assert mcp_memory.growth < GROWTH, mcp_memory.growth
    # 1,000 rows of 300 KB, and the connection pool is in working order afterwards
    with PeakMemory() as rows_memory:
        status, body = await rest(running, key, "SELECT n, repeat('x', 300000) AS v FROM generate_series(1, 1000) n")
    assert_too_large(status, body)
    assert rows_memory.growth < GROWTH, rows_memory.growth
    status, body = await rest(running, key, "SELECT count(*) AS n FROM customers")
    assert status == 200 and body["data"] == [{"n": 300}], body


async def test_postgres_an_answer_under_the_limit_is_served(make_server, pg_server: PgServer,  # noqa: F811
                                                            pg_db: str) -> None:  # noqa: F811
    running: RunningServer = await make_server({"limits": {"max_response_bytes": MB}},
                                               database_url=pg_server.url(pg_db))
    key = await running.create_key("analyst", ("query", "sql"))
    rows = "SELECT n, repeat('y', 2000) AS v FROM generate_series(1, $1) n"
    status, body = await rest(running, key, rows, [300])  # about 600 KB
    assert status == 200 and body["count"] == 300, body
    status, body = await rest(running, key, rows, [600])  # about 1.2 MB
    assert_too_large(status, body)
    # many small numbers: their binary form on the wire is larger than their JSON, and still fits
    status, body = await rest(running, key, "SELECT n, n + 1 AS m, n * 2 AS k FROM generate_series(1, $1) n",
                              [1000])
    assert status == 200 and body["count"] == 1000


async def test_postgres_answers_small_on_the_wire_are_not_counted_and_still_fit(
        make_server, pg_server: PgServer, pg_db: str) -> None:  # noqa: F811
    """Rows that took little room on the wire are not counted (server.db.postgres._WIRE_SMALL). The worst
    such answer, NULLs under 63-byte column names of control characters, still fits over MCP, where it
    travels twice and escaped again. A numeric whose scale of 16,383 digits takes a few bytes on the
    wire is always counted: ten rows fit over REST and are refused over MCP."""
    limit = 256 * 1024
    running: RunningServer = await make_server({"limits": {"max_response_bytes": limit}},
                                               database_url=pg_server.url(pg_db))
    key = await running.create_key("analyst", ("query", "sql"))
    names = ", ".join(f'NULL::text AS "{chr(code) * 63}"' for code in range(1, 32))
    worst = f"SELECT {names} FROM generate_series(1, $1)"
    await rest(running, key, worst, [1])  # described once; later calls carry only their rows
    served = 0
    for count in range(1, 17):
        status, payload, size = await mcp_run_sql(running, key, worst, [count])
        assert status == 200, payload
        if payload["result"]["isError"]:
            assert_mcp_too_large(status, payload)
            continue
        assert size <= limit, (count, size)
        served += 1
    assert served >= 3  # the uncounted ones among them (at least the first three) fit
    scale = "SELECT round(1.00000000000000000001, 16383) AS v FROM generate_series(1, $1)"
    status, body = await rest(running, key, scale, [10])
    assert status == 200 and body["count"] == 10 and len(json.dumps(body)) > 160_000, status
    status, payload, _ = await mcp_run_sql(running, key, scale, [10])
    assert_mcp_too_large(status, payload)


async def test_sqlite_lookups_of_capped_values_are_not_counted_and_still_fit(make_server) -> None:
    """On the event loop no value is over 4 KB (a larger one moves the read to a thread), so a lookup's few
    values are not counted (server.db.budget.rows_size, `value_cap`). The worst of them, 4 KB of control
    characters in every column, fits over MCP at every width that is not counted; wider answers are
    counted, and refused once they would not fit."""
    limit = 256 * 1024
    running: RunningServer = await make_server({"limits": {"max_response_bytes": limit}})
    key = await running.create_key("analyst", ("query", "sql"))
    worst = "replace(hex(zeroblob(2047)), '0', char(1))"  # 4,094 characters, each 6 bytes of JSON
    outcomes = []
    for width in range(1, 9):
        columns = ", ".join(f"{worst} AS c{number}" for number in range(width))
        status, payload, size = await mcp_run_sql(running, key, f"SELECT {columns}")
        if payload["result"]["isError"]:
            assert_mcp_too_large(status, payload)
            outcomes.append("refused")
            continue
        assert status == 200 and size <= limit, (width, size)
        outcomes.append("served")
    assert outcomes[:4] == ["served"] * 4 and "refused" in outcomes, outcomes


async def test_sqlite_catalog_values_over_the_loops_limit_are_answered_from_a_thread(home, make_server) -> None:
    """A catalog tool whose answer holds a value over the event loop's 4 KB is answered in full (the read
    moves to a worker thread under the full limits), and so is one whose SQL is longer than 4 KB."""
    padding = " " * 5000
    home.tools_file.write_text(home.tools_file.read_text() + f'''
[tools.long_note]
kind = "query"
description = "A long note."
sql = "SELECT :n AS n, replace(hex(zeroblob(:n)), '0', 'x') AS note"
max_rows = 1

[tools.long_note.params.n]
type = "integer"
description = "Half the note's length."

[tools.long_sql]
kind = "query"
description = "A tool whose SQL is long."
sql = "SELECT name{padding} FROM customers WHERE phone = :phone"
max_rows = 1

[tools.long_sql.params.phone]
type = "string"
description = "Phone number."
''')
    running: RunningServer = await make_server()
    key = await running.create_key("reader", ("query",))
    for n in (100, 3000, 50_000):
        status, body, _ = await running.post("/query", {"name": "long_note", "params": {"n": n}}, key=key)
        assert status == 200 and len(body["data"][0]["note"]) == 2 * n, (n, status, body.get("error"))
    status, body, _ = await running.post("/query", {"name": "long_sql", "params": {"phone": "+15558594448"}},
                                         key=key)
    assert status == 200 and body["data"] == [{"name": "Ava Martin"}], body
