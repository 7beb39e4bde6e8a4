"""PostgreSQL going away: down at startup, restarted under load, every connection busy.

Restarts use a private cluster (tests.postgres_support.PrivateCluster), so no other user of this
machine's PostgreSQL service is disturbed.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from tests.conftest import RunningServer, free_port
from tests.postgres_support import PgServer, PrivateCluster, pg_db, pg_private, pg_server  # noqa: F401

FIND = {"name": "find_customer_by_phone", "params": {"phone": "+15558594448"}}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def wait_for_health(server: RunningServer, status: int, seconds: float) -> float:
    """Poll /health until it answers `status`; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        got, _, _ = await server.get("/health")
        if got == status:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"/health did not answer {status} within {seconds} s")


async def test_server_starts_with_database_on_a_closed_port(make_server) -> None:
    port = free_port()
    collect = _Collect()
    bridge_log = logging.getLogger("server.bridge")
    bridge_log.addHandler(collect)
    try:
        running: RunningServer = await make_server(database_url=f"postgresql://shop@127.0.0.1:{port}/shop")
    finally:
        bridge_log.removeHandler(collect)
    key = await running.create_key("reader", ("query",))
    status, body, _ = await running.get("/health")
    assert status == 503 and body["status"] == "unhealthy"
    started = time.monotonic()
    status, body, _ = await running.post("/query", FIND, key=key)
    assert status == 503 and body["code"] == "database_unavailable"
    assert time.monotonic() - started < 2.0
    # Reconnects are tried every couple of seconds; the next one's reason reaches a key holder's /health.
    deadline = time.monotonic() + 4.0
    while True:
        status, body, _ = await running.get("/health", key=key)
        assert status == 503
        if f"127.0.0.1:{port}" in body["error"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert f"PostgreSQL at 127.0.0.1:{port} refused the connection" in body["error"]
    messages = [r.getMessage() for r in collect.records]
    assert any(m.startswith("database unavailable at start; will keep retrying: The database is unavailable: "
                            f"PostgreSQL at 127.0.0.1:{port} refused") for m in messages), messages


async def test_database_down_at_startup_comes_back_by_itself(make_server, pg_private: PrivateCluster) -> None:  # noqa: F811
    pg_private.pg_ctl("stop", "-m", "fast")
    try:
        running: RunningServer = await make_server(database_url=pg_private.url(password=pg_private.password))
        key = await running.create_key("reader", ("query",))
        status, _, _ = await running.get("/health")
        assert status == 503
        status, body, _ = await running.post("/query", FIND, key=key)
        assert status == 503 and body["code"] == "database_unavailable"
        assert pg_private.password not in body["error"]
        await asyncio.to_thread(pg_private.start)
        assert await wait_for_health(running, 200, 8.0) <= 5.0
        status, body, _ = await running.post("/query", FIND, key=key)
        assert status == 200 and body["data"][0]["name"] == "Ava Martin"
    finally:
        if not pg_private.running():
            pg_private.start()


async def test_restart_under_load_fails_fast_and_recovers_within_5_seconds(
        make_server, pg_private: PrivateCluster) -> None:  # noqa: F811
    timeout = 2.0
    running: RunningServer = await make_server(
        {"rate_limit": {"requests": 1_000_000}, "limits": {"query_timeout_seconds": timeout},
         "database": {"pool_max": 4}},
        database_url=pg_private.url(password=pg_private.password))
    key = await running.create_key("reader", ("query",))
    results: list[tuple[float, float, int]] = []
    stop_at = [float("inf")]

    async def client() -> None:
        while time.monotonic() < stop_at[0]:
            started = time.monotonic()
            status, _, _ = await running.post("/query", FIND, key=key)
            results.append((started, time.monotonic(), status))

    clients = [asyncio.create_task(client()) for _ in range(6)]
    try:
        await asyncio.sleep(1.0)
        restart_began = time.monotonic()
        await asyncio.to_thread(pg_private.restart)
        back_up = time.monotonic()
        stop_at[0] = back_up + 6.0
        await asyncio.gather(*clients)
    finally:
        stop_at[0] = 0
        for task in clients:
            task.cancel()
        if not pg_private.running():
            pg_private.start()

    statuses = {status for _, _, status in results}
    assert statuses <= {200, 503}, statuses
    assert max(end - start for start, end, _ in results) < timeout + 1.5  # nothing hung
    assert any(s == 503 for start, _, s in results if start >= restart_began - 0.5), "restart not seen"
    first_ok = min(end for start, end, s in results if start >= back_up and s == 200)
    assert first_ok - back_up < 5.0
    late = [s for start, _, s in results if start >= back_up + 5.0]
    assert late and set(late) == {200}
    assert await wait_for_health(running, 200, 3.0) < 3.0


async def test_pool_exhaustion_queues_briefly_then_503(make_server, pg_server: PgServer,  # noqa: F811
                                                       pg_db: str) -> None:  # noqa: F811
    running: RunningServer = await make_server(
        {"database": {"pool_max": 1, "acquire_timeout_seconds": 0.5}, "limits": {"query_timeout_seconds": 5}},
        database_url=pg_server.url(pg_db))
    key = await running.create_key("analyst", ("query", "sql"))
    slow = asyncio.create_task(running.post("/query", {"query": "SELECT pg_sleep(2) AS slept"}, key=key))
    await asyncio.sleep(0.3)  # the only connection is now busy
    started = time.monotonic()
    status, body, _ = await running.post("/query", FIND, key=key)
    waited = time.monotonic() - started
    assert status == 503 and body["code"] == "database_busy"
    assert 0.4 <= waited < 2.5
    status, _, _ = await running.get("/health")
    assert status == 200  # busy is not down: health has a connection of its own
    status, body, _ = await slow
    assert status == 200, body
    status, body, _ = await running.post("/query", FIND, key=key)
    assert status == 200


async def test_an_action_after_a_restart_gets_a_fresh_connection(make_server, pg_private: PrivateCluster) -> None:  # noqa: F811
    running: RunningServer = await make_server({"database": {"pool_max": 1}},
                                               database_url=pg_private.url(password=pg_private.password))
    key = await running.create_key("writer", ("query", "action"))
    status, _, _ = await running.post("/query", FIND, key=key)
    assert status == 200  # the pool's one connection is open
    await asyncio.to_thread(pg_private.restart)
    await asyncio.sleep(0.3)
    action = {"action": "create_customer", "params": {"name": "Ann After", "phone": "+15550003333"}}
    status, body, _ = await running.post("/action", action, key=key)
    assert status == 200, body
    assert await _count_phone(pg_private, "+15550003333") == 1


async def _count_phone(cluster: PrivateCluster, phone: str) -> int:
    con = await asyncpg.connect(cluster.url(password=cluster.password))
    try:
        return int(await con.fetchval("SELECT count(*) FROM customers WHERE phone = $1", phone))
    finally:
        await con.close()
