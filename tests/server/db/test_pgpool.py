"""The PostgreSQL connection pool against a real server: its size bound, its queue, and connections that
end while they wait (the server's own count of our sessions is the judge)."""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import pytest

from server.db.pgpool import ConnectionPool, PoolClosed
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401  (fixtures)


@pytest.fixture
def tag() -> str:
    return "voka-pool-" + secrets.token_hex(4)


def make_pool(pg_server: PgServer, database: str, tag: str, size: int,  # noqa: F811
              idle_lifetime: float = 30.0) -> ConnectionPool:
    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(pg_server.url(database), server_settings={"application_name": tag})

    return ConnectionPool(connect, size, idle_lifetime)


async def sessions(pg_server: PgServer, database: str, tag: str) -> int:  # noqa: F811
    rows = await pg_server.owner(database, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                 tag)
    return int(rows[0][0])


async def test_waiters_are_served_in_turn_and_the_size_bound_holds(pg_server: PgServer, pg_db: str,  # noqa: F811
                                                                   tag: str) -> None:
    pool = make_pool(pg_server, pg_db, tag, 2)
    first, second = await pool.acquire(1.0), await pool.acquire(1.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await pool.acquire(0.3)
    assert 0.25 <= time.monotonic() - started < 1.5
    served: list[int] = []

    async def wait(n: int) -> None:
        pooled = await pool.acquire(5.0)
        served.append(n)
        assert await pooled.con.fetchval("SELECT 1") == 1
        await asyncio.sleep(0.05)
        pool.release(pooled, reusable=True)

    waiting = [asyncio.create_task(wait(n)) for n in range(4)]
    await asyncio.sleep(0.1)
    pool.release(first, reusable=True)
    pool.release(second, reusable=False)  # its place goes to a waiter, who opens a new connection
    await asyncio.gather(*waiting)
    assert served == [0, 1, 2, 3]
    assert await sessions(pg_server, pg_db, tag) == 2 and pool.idle == 2
    await pool.close()
    assert await sessions(pg_server, pg_db, tag) == 0
    with pytest.raises(PoolClosed):
        await pool.acquire(1.0)


async def test_a_connection_the_server_ended_is_replaced_and_idle_ones_expire(
        pg_server: PgServer, pg_db: str, tag: str) -> None:  # noqa: F811
    pool = make_pool(pg_server, pg_db, tag, 1, idle_lifetime=0.5)
    pooled = await pool.acquire(1.0)
    pid = pooled.con.get_server_pid()
    pool.release(pooled, reusable=True)
    await pg_server.admin("SELECT pg_terminate_backend($1)", pid)
    await asyncio.sleep(0.3)
    again = await pool.acquire(1.0)
    second_pid = again.con.get_server_pid()
    assert second_pid != pid and await again.con.fetchval("SELECT 1") == 1
    pool.release(again, reusable=True)
    await asyncio.sleep(1.2)  # past its lifetime: closed while nobody asked for a connection
    assert again.con.is_closed() and await sessions(pg_server, pg_db, tag) == 0 and pool.idle == 0
    fresh = await pool.acquire(1.0)
    assert fresh.con.get_server_pid() not in (pid, second_pid)
    pool.release(fresh, reusable=True)
    await asyncio.sleep(0.2)
    assert await sessions(pg_server, pg_db, tag) == 1
    pool.terminate()


async def test_a_wait_that_ends_as_a_connection_is_handed_over_loses_nothing(
        pg_server: PgServer, pg_db: str, tag: str) -> None:  # noqa: F811
    pool = make_pool(pg_server, pg_db, tag, 1)
    held = await pool.acquire(1.0)
    waiter = asyncio.create_task(pool.acquire(5.0))
    await asyncio.sleep(0.05)
    pool.release(held, reusable=True)  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.idle == 1
    assert (await pool.acquire(0.5)).con is held.con
    await pool.close()


async def test_terminate_ends_every_wait_at_once(pg_server: PgServer, pg_db: str, tag: str) -> None:  # noqa: F811
    pool = make_pool(pg_server, pg_db, tag, 1)
    held = await pool.acquire(1.0)
    waiter = asyncio.create_task(pool.acquire(30.0))
    await asyncio.sleep(0.05)
    pool.terminate()
    with pytest.raises(PoolClosed):
        await asyncio.wait_for(waiter, 2.0)  # not left to hang: the deadline sweeper is stopped too
    pool.release(held, reusable=True)  # closed, not kept, once the pool is shut
    assert held.con.is_closed() and pool.idle == 0


async def test_an_owner_past_its_share_waits_in_line_while_another_owner_is_served(
        pg_server: PgServer, pg_db: str, tag: str) -> None:  # noqa: F811
    """Shares(2, capacity=4): one owner takes three connections (its half, and one more while one stays
    free); its fourth request waits, skipped by the queue, while another owner's request is served first;
    it gets its turn once taking one leaves one free again, or times out (no place is lost either way)."""
    from server.handoff import Shares

    shares: Shares[str] = Shares(2, capacity=4)
    pool = ConnectionPool(make_pool(pg_server, pg_db, tag, 4)._connect, 4, 30.0, shares=shares)
    held = [await pool.acquire(1.0, "flood") for _ in range(3)]
    assert shares.held("flood") == 3
    with pytest.raises(TimeoutError):
        await pool.acquire(0.2, "flood")  # a free connection exists, but not for this owner
    fourth = asyncio.create_task(pool.acquire(5.0, "flood"))
    await asyncio.sleep(0.05)
    other = await pool.acquire(1.0, "other")  # jumps ahead of the waiting flood request
    assert not fourth.done() and other.owner == "other"
    pool.release(held.pop(), reusable=True)  # flood 2 + other 1: a third for flood would leave none free
    await asyncio.sleep(0.05)
    assert not fourth.done() and pool.idle == 1
    pool.release(other, reusable=True)  # now it may
    got = await asyncio.wait_for(fourth, 2.0)
    assert got.owner == "flood" and shares.held("flood") == 3
    for pooled in [*held, got]:
        pool.release(pooled, reusable=True)
    assert shares.held("flood") == shares.held("other") == 0 and pool.idle == 4
    await pool.close()
