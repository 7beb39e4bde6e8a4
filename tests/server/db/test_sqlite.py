"""The SQLite backend on a real file: engine-enforced read-only raw SQL, limits, WAL concurrency."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest

from server.db.sqlite import SqliteDatabase, sqlite_path
from server.errors import BadRequest, Conflict, DatabaseUnavailable, QueryTimeout, ReadOnlyViolation
from server.paths import Paths


@pytest.fixture
async def db(home: Paths):
    database = SqliteDatabase(home.demo_db, readers=2)
    await database.open()
    yield database
    await database.close()


def table_digest(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return [conn.execute(f"SELECT count(*), total(rowid) FROM {t}").fetchone()
                for t in ("customers", "inventory", "orders")] + [
            conn.execute("SELECT group_concat(name) FROM sqlite_schema").fetchone()]
    finally:
        conn.close()


ESCAPES = [
    "INSERT INTO customers (name, phone) VALUES ('x', '+1999')",
    "UPDATE inventory SET quantity = 0",
    "DELETE FROM orders",
    "DROP TABLE customers",
    "CREATE TABLE evil (x)",
    "CREATE TEMP TABLE evil (x)",
    "ALTER TABLE customers ADD COLUMN evil TEXT",
    "ATTACH DATABASE '/tmp/evil.sqlite3' AS evil",
    "PRAGMA journal_mode=DELETE",
    "PRAGMA query_only=OFF",
    "PRAGMA writable_schema=ON",
    "SELECT load_extension('/tmp/evil.so')",
    "VACUUM",
    "REINDEX",
    "BEGIN",
    "SAVEPOINT s1",
    "WITH x AS (SELECT 1) DELETE FROM orders",
    "INSERT INTO orders (customer_id, items) SELECT id, '[]' FROM customers RETURNING id",
    "REPLACE INTO inventory VALUES ('SCF-RED', 'x', 0, 'x')",
    "ANALYZE",
]


@pytest.mark.parametrize("sql", ESCAPES)
async def test_raw_sql_cannot_write(db: SqliteDatabase, home: Paths, sql: str) -> None:
    before = table_digest(home.demo_db)
    with pytest.raises((ReadOnlyViolation, BadRequest)) as caught:
        await db.read(sql, [], max_rows=10, timeout=2, raw=True)
    assert caught.value.status == 400
    assert table_digest(home.demo_db) == before
    assert not Path("/tmp/evil.sqlite3").exists()


async def test_read_connections_refuse_even_after_an_escape_attempt(db: SqliteDatabase) -> None:
    for _ in range(3):  # every reader in the pool, more than once
        with pytest.raises(ReadOnlyViolation):
            await db.read("PRAGMA query_only=OFF", [], max_rows=1, timeout=1, raw=True)
        with pytest.raises(ReadOnlyViolation):
            await db.read("DELETE FROM orders", [], max_rows=1, timeout=1, raw=True)


async def test_time_limit_interrupts_inside_the_engine(db: SqliteDatabase) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(QueryTimeout):
        await db.read(endless, [], max_rows=1, timeout=0.2, raw=True)
    rows = await db.read("SELECT count(*) AS n FROM customers", [], max_rows=1, timeout=1)
    assert rows.rows[0]["n"] >= 300


async def test_row_cap_fetches_one_past_the_limit_only(db: SqliteDatabase) -> None:
    rows = await db.read("SELECT id FROM customers ORDER BY id", [], max_rows=3, timeout=1, raw=True)
    assert [r["id"] for r in rows.rows] == [1, 2, 3] and rows.truncated
    rows = await db.read("SELECT id FROM customers WHERE id <= 3", [], max_rows=3, timeout=1, raw=True)
    assert len(rows.rows) == 3 and not rows.truncated


async def test_named_and_dollar_parameters_are_bound(db: SqliteDatabase) -> None:
    hostile = "x' OR '1'='1"
    by_name = await db.read("SELECT count(*) AS n FROM customers WHERE phone = :phone", {"phone": hostile},
                            max_rows=1, timeout=1)
    by_number = await db.read("SELECT count(*) AS n FROM customers WHERE phone = $1 OR name = $2",
                              [hostile, hostile], max_rows=1, timeout=1, raw=True)
    assert by_name.rows[0]["n"] == 0 and by_number.rows[0]["n"] == 0


async def test_values_are_json_safe(db: SqliteDatabase) -> None:
    async with db.transaction(timeout=2) as tx:
        await tx.execute("CREATE TABLE IF NOT EXISTS blobs (b BLOB, d TEXT)", {})
        await tx.execute("INSERT INTO blobs VALUES (:b, :d)", {"b": b"\x00\x01", "d": dt.date(2026, 1, 2)})
    rows = await db.read("SELECT b, d FROM blobs", {}, max_rows=5, timeout=1)
    from server.jsonsafe import dumps

    assert dumps(rows.rows) == '[{"b":"AAE=","d":"2026-01-02"}]'


async def test_failed_transaction_rolls_back(db: SqliteDatabase, home: Paths) -> None:
    before = table_digest(home.demo_db)
    with pytest.raises(Conflict):
        async with db.transaction(timeout=2) as tx:
            await tx.execute("UPDATE inventory SET quantity = quantity + 1", {})
            await tx.execute("INSERT INTO customers (name, phone) VALUES ('dup', '+15558594448')", {})
    assert table_digest(home.demo_db) == before


async def test_a_long_read_never_blocks_a_write(db: SqliteDatabase) -> None:
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 15000000) "
            "SELECT count(*) FROM c")
    reader = asyncio.create_task(db.read(slow, [], max_rows=1, timeout=20, raw=True))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    async with db.transaction(timeout=2) as tx:
        await tx.execute("UPDATE inventory SET quantity = quantity + 1 WHERE product_id = 'SCF-RED'", {})
    write_took = time.monotonic() - started
    assert not reader.done(), "the read should still be running while the write committed"
    await reader
    assert write_took < 1.0


def test_sqlite_url_forms(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///srv/shop.sqlite3", tmp_path) == Path("/srv/shop.sqlite3")
    assert sqlite_path("sqlite:shop.sqlite3", tmp_path) == tmp_path / "shop.sqlite3"


SLOWISH = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "
           "SELECT count(*) AS n FROM c")


async def test_more_reads_than_readers_queue_and_a_cancelled_one_gives_its_turn_away(db: SqliteDatabase) -> None:
    """Two readers (the fixture's), five long reads at once: three wait for a reader; one of them is
    cancelled while it waits, and the other four all answer and hand their readers back."""
    reads = [asyncio.create_task(db.read(SLOWISH.format(n=1_000_000 + i), [], max_rows=1, timeout=20, raw=True))
             for i in range(5)]
    await asyncio.sleep(0.05)
    assert len(db._waiting) == 3
    reads[3].cancel()
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r.rows[0]["n"] for i, r in enumerate(results) if i != 3] == [1_000_000, 1_000_001, 1_000_002,
                                                                        1_000_004]
    assert len(db._idle) == 2 and not db._waiting


async def test_a_read_waiting_for_a_reader_when_the_database_closes_is_told(home: Paths) -> None:
    database = SqliteDatabase(home.demo_db, readers=1)
    await database.open()
    running = asyncio.create_task(database.read(SLOWISH.format(n=3_000_000), [], max_rows=1, timeout=20,
                                                raw=True))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(database.read("SELECT 1 AS one", [], max_rows=1, timeout=5, raw=True))
    await asyncio.sleep(0.01)
    await database.close()
    with pytest.raises(DatabaseUnavailable, match="closed"):
        await waiting
    await asyncio.gather(running, return_exceptions=True)
