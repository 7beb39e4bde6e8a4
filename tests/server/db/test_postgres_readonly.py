"""Raw SQL on PostgreSQL is read-only by PostgreSQL's own rules: an escape corpus, session hygiene, limits."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.conftest import RunningServer
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401  (fixtures)

ESCAPES = [
    # writes
    "INSERT INTO customers (name, phone) VALUES ('Mallory', '+15550009999')",
    "INSERT INTO customers (name, phone) VALUES ('Mallory', '+15550009999') RETURNING id",
    "UPDATE inventory SET quantity = 0",
    "UPDATE inventory SET quantity = 0 RETURNING *",
    "DELETE FROM orders",
    "DELETE FROM orders RETURNING id",
    "MERGE INTO inventory i USING (SELECT 'UMB-BLK' AS p) s ON i.product_id = s.p "
    "WHEN MATCHED THEN UPDATE SET quantity = 0",
    "TRUNCATE orders",
    "EXPLAIN ANALYZE DELETE FROM orders",
    "SELECT * FROM inventory FOR UPDATE",
    # DDL
    "DROP TABLE orders",
    "ALTER TABLE customers ADD COLUMN pwned text",
    "CREATE TABLE pwned (x int)",
    "CREATE INDEX pwned_idx ON customers (name)",
    "GRANT ALL ON customers TO PUBLIC",
    "COMMENT ON TABLE customers IS 'pwned'",
    "CREATE FUNCTION pwned() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE EXTENSION IF NOT EXISTS dblink",
    "VACUUM orders",
    "ANALYZE orders",
    "LOCK TABLE inventory IN ACCESS EXCLUSIVE MODE",
    # several statements, and leaving our transaction
    "SELECT 1; DROP TABLE orders",
    "COMMIT; DROP TABLE orders",
    "ROLLBACK; DELETE FROM orders",
    "END; UPDATE inventory SET quantity = 0",
    "SELECT 1; COMMIT; DELETE FROM orders;",
    "COMMIT",
    "BEGIN",
    "ROLLBACK",
    "START TRANSACTION READ WRITE",
    "SET TRANSACTION READ WRITE",
    "PREPARE TRANSACTION 'pwned'",
    # data-modifying CTEs
    "WITH d AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM d",
    "WITH u AS (UPDATE inventory SET quantity = 0 RETURNING 1) SELECT * FROM u",
    "WITH i AS (INSERT INTO customers (name, phone) VALUES ('M', '+15550008888') RETURNING id) SELECT id FROM i",
    # session changes
    "SET default_transaction_read_only = off",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SET statement_timeout = 0",
    "SET LOCAL lock_timeout = 0",
    "SET ROLE postgres",
    "SET search_path = pg_temp",
    "RESET ALL",
    "DISCARD ALL",
    "LOAD 'plpgsql'",
    "LISTEN pwned",
    "NOTIFY pwned",
    # COPY
    "COPY customers TO STDOUT",
    "COPY customers FROM STDIN",
    "COPY (SELECT 1) TO '/tmp/voka-pwned'",
    "COPY customers TO PROGRAM 'id'",
    # server files and programs
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_read_binary_file('/etc/passwd')",
    "SELECT * FROM pg_ls_dir('/')",
    "SELECT pg_stat_file('/etc/passwd')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_export(1, '/tmp/voka-pwned')",
    # functions a READ ONLY transaction lets through, revoked by the least-privilege SQL (pgsafety)
    "SELECT lo_create(0)",
    "SELECT lo_from_bytea(0, 'pwned')",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_cancel_backend(pg_backend_pid())",
    "SELECT pg_logical_emit_message(false, 'voka', 'pwned')",
    "SELECT pg_advisory_lock(42)",
    "SELECT pg_try_advisory_xact_lock(42)",
    # temp tables
    "CREATE TEMP TABLE t AS SELECT * FROM customers",
    "CREATE TEMPORARY TABLE t (x int)",
    "SELECT * INTO TEMP t FROM customers",
    # sequences
    "SELECT nextval('customers_id_seq')",
    "SELECT setval('customers_id_seq', 1)",
    "ALTER SEQUENCE customers_id_seq RESTART",
    # DO blocks and procedures
    "DO $$ BEGIN DELETE FROM orders; END $$",
    "DO $$ BEGIN COMMIT; DELETE FROM orders; END $$",
    "CALL pwned()",
    # PREPARE / EXECUTE
    "PREPARE p AS DELETE FROM orders",
    "PREPARE q AS SELECT 1",
    "EXECUTE p",
    "DEALLOCATE ALL",
]

# PostgreSQL lets these run in a READ ONLY transaction; the ROLLBACK that ends every read undoes them.
ROLLED_BACK = [
    "SELECT pg_notify('pwned', 'x')",
]

FINGERPRINT = """
SELECT (SELECT md5(string_agg(c::text, '|' ORDER BY c.id)) FROM customers c) AS customers,
       (SELECT md5(string_agg(i::text, '|' ORDER BY i.product_id)) FROM inventory i) AS inventory,
       (SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) FROM orders o) AS orders,
       (SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname) FROM pg_class
         WHERE relnamespace = 'public'::regnamespace) AS relations,
       (SELECT string_agg(attname::text, ',' ORDER BY attrelid, attnum) FROM pg_attribute
         WHERE attrelid = 'customers'::regclass AND attnum > 0) AS customer_columns,
       (SELECT last_value FROM customers_id_seq) AS customer_seq,
       (SELECT count(*) FROM pg_largeobject_metadata) AS large_objects,
       (SELECT obj_description('customers'::regclass)) AS comment,
       (SELECT relacl::text FROM pg_class WHERE oid = 'customers'::regclass) AS acl,
       (SELECT count(*) FROM pg_proc WHERE proname = 'pwned') AS functions,
       (SELECT count(*) FROM pg_prepared_xacts) AS prepared_xacts
"""


async def fingerprint(pg: PgServer, db: str) -> dict:
    return dict((await pg.owner(db, FINGERPRINT))[0])


@pytest.fixture
async def api(pg_server: PgServer, pg_db: str, make_server) -> RunningServer:  # noqa: F811
    running: RunningServer = await make_server(
        {"rate_limit": {"requests": 10_000}, "database": {"pool_max": 2},
         "limits": {"query_timeout_seconds": 1.5, "max_rows": 50}},
        database_url=pg_server.url(pg_db))
    await running.create_key("analyst", ("query", "action", "sql"))
    return running


async def test_every_escape_attempt_is_refused_and_nothing_changes(api: RunningServer, pg_server: PgServer,  # noqa: F811
                                                                   pg_db: str) -> None:  # noqa: F811
    before = await fingerprint(pg_server, pg_db)
    assert before["customers"] and before["relations"]
    outcomes = {}
    for sql in ESCAPES:
        status, body, _ = await api.post("/query", {"query": sql}, key=api.keys["analyst"])
        outcomes[sql] = (status, body)
        assert status in (400, 403), (sql, status, body)
        assert body["success"] is False and body["error"], sql
        assert "asyncpg" not in body["error"] and "Traceback" not in body["error"], sql
    for sql in ROLLED_BACK:
        status, body, _ = await api.post("/query", {"query": sql}, key=api.keys["analyst"])
        assert status == 200, (sql, body)
    assert await fingerprint(pg_server, pg_db) == before
    # The refusals name the reason in plain words.
    assert outcomes["SELECT 1; DROP TABLE orders"][1]["code"] == "multiple_statements"
    assert outcomes["DROP TABLE orders"][1]["code"] == "read_only"
    assert outcomes["UPDATE inventory SET quantity = 0 RETURNING *"][1]["code"] == "read_only"
    assert outcomes["SELECT pg_read_file('/etc/passwd')"][1]["code"] == "permission_denied"
    # The server is still serving reads afterwards on the same (small) pool.
    status, body, _ = await api.post("/query", {"query": "SELECT count(*) AS n FROM orders"},
                                     key=api.keys["analyst"])
    assert status == 200 and body["data"] == [{"n": 400}]


async def test_nothing_a_statement_does_to_the_session_survives(pg_server: PgServer, pg_db: str,  # noqa: F811
                                                                make_server) -> None:
    # A role that may take advisory locks (the least-privilege SQL takes that away) is allowed here, to
    # show that a lock a statement took is released all the same.
    await pg_server.admin("GRANT EXECUTE ON FUNCTION pg_advisory_lock(bigint), pg_try_advisory_lock(bigint) "
                          f"TO {pg_server.role}", database=pg_db)
    running: RunningServer = await make_server({"database": {"pool_max": 1, "allow_privileged_role": True}},
                                               database_url=pg_server.url(pg_db))
    key = await running.create_key("analyst", ("query", "sql"))

    async def one(sql: str) -> list[dict]:
        status, body, _ = await running.post("/query", {"query": sql}, key=key)
        assert status == 200, (sql, body)
        return body["data"]

    defaults = (await one("SELECT current_setting('search_path') AS path, current_setting('application_name') "
                          "AS app, current_setting('default_transaction_read_only') AS ro"))[0]
    assert defaults["app"] == "voka-bridge" and defaults["ro"] == "off"
    # Row-returning statements that change the session or take session locks run, and leave nothing.
    await one("SELECT set_config('search_path', 'pg_temp', false), set_config('application_name', 'x', false), "
              "set_config('default_transaction_read_only', 'off', false), "
              "set_config('statement_timeout', '0', false), pg_advisory_lock(4242), pg_backend_pid()")
    after = (await one("SELECT current_setting('search_path') AS path, current_setting('application_name') "
                       "AS app, current_setting('default_transaction_read_only') AS ro, "
                       "current_setting('transaction_read_only') AS tx_ro, "
                       "current_setting('statement_timeout') AS timeout"))[0]
    assert {k: after[k] for k in defaults} == defaults
    assert after["tx_ro"] == "on"
    assert after["timeout"] == "5s"  # our SET LOCAL, not the statement's 0
    free = await pg_server.owner(pg_db, "SELECT pg_try_advisory_lock(4242) AS got")
    assert free[0]["got"] is True
    # A notification sent from a read is rolled back with it: a listener hears nothing.
    heard: list[str] = []
    listener = await asyncpg.connect(pg_server.url(pg_db))
    try:
        await listener.add_listener("voka_chan", lambda *args: heard.append(args[-1]))
        await one("SELECT pg_notify('voka_chan', 'escaped') AS sent")
        await listener.execute("NOTIFY voka_chan, 'control'")
        await asyncio.sleep(0.3)
    finally:
        await listener.close()
    assert heard == ["control"]
    # One pooled connection served all of it: the same backend, reset between requests.
    pids = {(await one("SELECT pg_backend_pid() AS pid"))[0]["pid"] for _ in range(3)}
    assert len(pids) == 1


async def test_pg_sleep_past_the_limit_is_504_in_time_and_frees_the_connection(
        api: RunningServer, pg_server: PgServer, pg_db: str) -> None:  # noqa: F811
    started = time.monotonic()
    status, body, _ = await api.post("/query", {"query": "SELECT pg_sleep(30)"}, key=api.keys["analyst"])
    elapsed = time.monotonic() - started
    assert status == 504 and body["code"] == "query_timeout"
    assert elapsed < 1.5 + 2.0
    # Both pooled connections work again at once, and nothing is still running on the server.
    results = await asyncio.gather(*(api.post("/query", {"query": "SELECT 1 AS one"}, key=api.keys["analyst"])
                                     for _ in range(4)))
    assert [r[0] for r in results] == [200] * 4
    busy = await pg_server.owner(pg_db, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                                        "AND state = 'active' AND pid <> pg_backend_pid()")
    assert busy[0][0] == 0


async def test_huge_result_is_capped_by_a_cursor(api: RunningServer, pg_server: PgServer,  # noqa: F811
                                                 pg_db: str) -> None:  # noqa: F811
    # 27 million rows: answered within the 1.5 s limit only because the cursor stops at max_rows + 1.
    sql = "SELECT a.id AS a, b.id AS b, c.name FROM customers a, customers b, customers c"
    status, body, _ = await api.post("/query", {"query": sql}, key=api.keys["analyst"])
    assert status == 200, body
    assert body["count"] == 50 and len(body["data"]) == 50 and body["truncated"] is True
    status, body, _ = await api.post("/query", {"query": "SELECT id FROM customers WHERE id <= 50 ORDER BY id"},
                                     key=api.keys["analyst"])
    assert status == 200 and body["count"] == 50 and body["truncated"] is False


async def test_a_read_waiting_on_a_lock_gives_up_at_the_lock_timeout(
        pg_server: PgServer, pg_db: str, make_server) -> None:  # noqa: F811
    running: RunningServer = await make_server({"database": {"lock_timeout_seconds": 0.3},
                                                "limits": {"query_timeout_seconds": 5}},
                                               database_url=pg_server.url(pg_db))
    key = await running.create_key("analyst", ("query", "sql"))
    holder = await asyncpg.connect(pg_server.url(pg_db))
    try:
        await holder.execute("BEGIN; LOCK TABLE inventory IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        status, body, _ = await running.post("/query", {"query": "SELECT count(*) FROM inventory"}, key=key)
        assert status == 504 and body["code"] == "lock_timeout"
        assert time.monotonic() - started < 3.0
        await holder.execute("ROLLBACK")
    finally:
        await holder.close()
    status, body, _ = await running.post("/query", {"query": "SELECT count(*) AS n FROM inventory"}, key=key)
    assert status == 200 and body["data"] == [{"n": 40}]


async def test_between_reads_a_connection_waits_in_an_empty_read_only_transaction(
        pg_server: PgServer, pg_db: str, make_server) -> None:  # noqa: F811
    """The next read's BEGIN travels with the previous read's cleanup. Waiting like that must cost the
    database nothing: no snapshot (VACUUM is not held back), no lock on any table (DDL is not blocked),
    no transaction id; and the read that follows still runs read-only under our limits."""
    running: RunningServer = await make_server({"database": {"pool_max": 1}, "limits": {"query_timeout_seconds": 5}},
                                               database_url=pg_server.url(pg_db))
    key = await running.create_key("analyst", ("query", "sql"))
    status, body, _ = await running.post("/query", {"query": "SELECT pg_backend_pid() AS pid, "
                                                    "count(*) AS n FROM customers"}, key=key)
    assert status == 200, body
    pid = body["data"][0]["pid"]
    waiting = await pg_server.owner(pg_db, "SELECT state, backend_xmin, backend_xid FROM pg_stat_activity "
                                           "WHERE pid = $1", pid)
    assert dict(waiting[0]) == {"state": "idle in transaction", "backend_xmin": None, "backend_xid": None}
    locks = await pg_server.owner(pg_db, "SELECT locktype FROM pg_locks WHERE pid = $1", pid)
    assert [r["locktype"] for r in locks] == ["virtualxid"]
    await asyncio.wait_for(pg_server.owner(pg_db, "ALTER TABLE customers ADD COLUMN note_x text"), 5)
    await asyncio.wait_for(pg_server.owner(pg_db, "ALTER TABLE customers DROP COLUMN note_x"), 5)
    status, body, _ = await running.post("/query", {"query": "SELECT pg_backend_pid() AS pid, current_setting("
                                                    "'transaction_read_only') AS ro, current_setting("
                                                    "'statement_timeout') AS timeout"}, key=key)
    assert status == 200 and body["data"] == [{"pid": pid, "ro": "on", "timeout": "5s"}]
    status, body, _ = await running.post("/query", {"query": "WITH d AS (DELETE FROM orders RETURNING id) "
                                                    "SELECT count(*) FROM d"}, key=key)
    assert status in (400, 403) and body["code"] == "read_only", body
    action = {"action": "create_customer", "params": {"name": "Ann Armed", "phone": "+15550004444"}}
    writer = await running.create_key("writer", ("query", "action"))
    status, body, _ = await running.post("/action", action, key=writer)  # a write on the same connection
    assert status == 200, body
    count = await pg_server.owner(pg_db, "SELECT count(*) FROM customers WHERE phone = '+15550004444'")
    assert count[0][0] == 1
