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
