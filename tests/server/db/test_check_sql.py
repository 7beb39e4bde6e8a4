"""Checking a tool's SQL without running it (Database.check_sql), on a real SQLite file and a real
PostgreSQL database: the database's own message for SQL it does not accept, nothing ever executed."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from server.catalog import Catalog
from server.config import DatabaseSettings
from server.db.base import Database
from server.db.postgres import PostgresDatabase
from server.db.sqlite import SqliteDatabase
from server.errors import DatabaseUnavailable, QueryTimeout
from server.paths import Paths
from server.tool_test import SqlProblem, check_catalog
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401  (fixtures)

BROKEN = "SELEC name FROM productz WHERE"
# Statements that would change every table if they ran: the check must leave all of them as they were.
WRITES = [
    "UPDATE inventory SET quantity = 0",
    "DELETE FROM orders",
    "INSERT INTO customers (name, phone) VALUES (:name, :phone) RETURNING id",
    "UPDATE customers SET name = :name WHERE id = :id RETURNING id, name",
]
SAYS = {
    "sqlite": {BROKEN: 'near "SELEC": syntax error',
               "SELECT name FROM productz": "no such table: productz",
               "SELECT nam FROM inventory WHERE product_id = :product_id": "no such column: nam",
               "SELECT name FROM inventory WHERE": "incomplete input"},
    "postgresql": {BROKEN: 'syntax error at or near "SELEC"',
                   "SELECT name FROM productz": 'relation "productz" does not exist',
                   "SELECT nam FROM inventory WHERE product_id = :product_id": 'column "nam" does not exist',
                   "SELECT name FROM inventory WHERE": "syntax error at end of input"},
}


@pytest.fixture
async def sqlite_db(home: Paths):
    database = SqliteDatabase(home.demo_db, readers=2)
    await database.open()
    yield database
    await database.close()


@pytest.fixture
async def postgres_db(pg_server: PgServer, pg_db: str):  # noqa: F811
    database = PostgresDatabase(pg_server.url(pg_db), DatabaseSettings())
    await database.open()
    yield database
    await database.close()


@pytest.fixture(params=["sqlite_db", "postgres_db"])
def db(request: pytest.FixtureRequest) -> Database:
    return request.getfixturevalue(request.param)


async def digest(db: Database) -> list[dict]:
    """What a run of any WRITES statement would change."""
    rows = await db.read("SELECT (SELECT count(*) FROM customers) AS customers, "
                         "(SELECT max(name) FROM customers) AS a_name, "
                         "(SELECT sum(quantity) FROM inventory) AS stock, "
                         "(SELECT count(*) FROM orders) AS orders", {}, max_rows=1, timeout=5)
    return rows.rows


async def test_sql_that_prepares_is_accepted_and_never_run(db: Database) -> None:
    before = await digest(db)
    for sql in WRITES:
        assert await db.check_sql(sql, writes=True, timeout=5) is None, sql
    assert await db.check_sql("SELECT id, name FROM customers WHERE phone = :phone", writes=False,
                              timeout=5) is None
    assert await digest(db) == before


async def test_the_database_names_what_it_does_not_accept(db: Database) -> None:
    for sql, says in SAYS[db.engine].items():
        for writes in (False, True):
            message = await db.check_sql(sql, writes=writes, timeout=5)
            assert message is not None and says in message, (sql, message)
    # the connections stay good for Voka's next call
    assert (await db.read("SELECT count(*) AS n FROM inventory", {}, max_rows=1, timeout=5)).rows[0]["n"] > 0


async def test_every_tool_of_the_catalog_is_prepared_and_each_failure_named(db: Database, home: Paths) -> None:
    catalog = Catalog.load(home.tools_file)
    before = await digest(db)
    assert await check_catalog(db, catalog, timeout=5) == []
    spec = {"tools": {
        "broken_lookup": {"kind": "query", "description": "x", "sql": BROKEN},
        "half_broken": {"kind": "action", "description": "x", "params": {"name": {"type": "string"}},
                        "steps": [{"sql": "INSERT INTO customers (name, phone) VALUES (:name, '+1555000')"},
                                  {"sql": "UPDATE productz SET quantity = 0"}]},
        "fine": {"kind": "action", "description": "x", "sql": "DELETE FROM orders"},
    }}
    problems = await check_catalog(db, Catalog.from_dict(spec), timeout=5)
    assert [(p.tool, p.step) for p in problems] == [("broken_lookup", None), ("half_broken", 2)]
    assert str(problems[0]) == SAYS[db.engine][BROKEN]  # a tool of one statement: just the message
    assert str(problems[1]).startswith("step 2: ") and "productz" in str(problems[1])
    assert await digest(db) == before
    assert str(SqlProblem("t", None, "m")) == "m"


async def test_sqlite_checks_a_query_under_the_read_only_rules(sqlite_db: SqliteDatabase) -> None:
    message = await sqlite_db.check_sql("DELETE FROM orders", writes=False, timeout=5)
    assert message is not None and "not authorized" in message and "a query may only read" in message
    assert await sqlite_db.check_sql("DELETE FROM orders", writes=True, timeout=5) is None
    assert await sqlite_db.check_sql("EXPLAIN QUERY PLAN SELECT * FROM inventory", writes=False,
                                     timeout=5) is None


async def test_sqlite_a_missing_file_is_unavailable_not_a_sql_problem(tmp_path: Path, home: Paths) -> None:
    copy = tmp_path / "shop.sqlite3"
    copy.write_bytes(home.demo_db.read_bytes())
    database = SqliteDatabase(copy, readers=1)
    await database.open()
    try:
        copy.unlink()
        with pytest.raises(DatabaseUnavailable):
            await database.check_sql("SELECT 1", writes=False, timeout=5)
    finally:
        await database.close()


async def test_postgres_messages_never_hold_the_password(pg_server: PgServer, pg_db: str,  # noqa: F811
                                                         postgres_db: PostgresDatabase) -> None:
    message = await postgres_db.check_sql(f'SELECT "{pg_server.password}" FROM inventory', writes=False,
                                          timeout=5)
    assert message is not None and "does not exist" in message
    assert pg_server.password not in message and "***" in message


async def test_postgres_the_check_holds_no_lock_after_it(pg_server: PgServer, pg_db: str,  # noqa: F811
                                                         postgres_db: PostgresDatabase) -> None:
    for sql in WRITES:
        assert await postgres_db.check_sql(sql, writes=True, timeout=5) is None
    # everything the check touched was rolled back: another session takes every table at once
    con = await asyncpg.connect(pg_server.url(pg_db), timeout=10)
    try:
        async with con.transaction():
            await con.execute("SET LOCAL lock_timeout = '1s'; "
                              "LOCK TABLE customers, inventory, orders IN ACCESS EXCLUSIVE MODE")
    finally:
        await con.close()


async def test_postgres_a_locked_table_is_a_timeout_not_a_sql_problem(pg_server: PgServer,  # noqa: F811
                                                                      pg_db: str,  # noqa: F811
                                                                      postgres_db: PostgresDatabase) -> None:
    holder = await asyncpg.connect(pg_server.url(pg_db), timeout=10)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE inventory IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(QueryTimeout):
                await postgres_db.check_sql("SELECT name FROM inventory", writes=False, timeout=0.5)
    finally:
        await holder.close()
    assert await postgres_db.check_sql("SELECT name FROM inventory", writes=False, timeout=5) is None


async def test_postgres_an_unreachable_database_is_unavailable(pg_server: PgServer,  # noqa: F811
                                                               pg_db: str) -> None:  # noqa: F811
    database = PostgresDatabase(pg_server.url(pg_db), DatabaseSettings())
    await database.open()
    try:
        await database.close()
        with pytest.raises(DatabaseUnavailable):
            await database.check_sql("SELECT 1", writes=False, timeout=5)
    finally:
        await database.close()
