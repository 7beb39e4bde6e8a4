"""The action ledger (server/ledger.py) on both engines: a tracked action leaves its trace inside its own
transaction, and whatever a dead process left between its commit and our record of it is settled from
what the shop's database says — committed, rolled back, still deciding, or no longer knowable."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from typing import Any

import asyncpg
import pytest

from server import idempotency
from server.idempotency import fingerprint
from server.ledger import TRACE_TABLE
from server.liveness import ProcessLease
from server.webhooks import outbox
from tests.conftest import RunningServer
from tests.postgres_support import pg_db, pg_server  # noqa: F401  (fixtures)

ARGS = {"customer_id": 3, "items": [{"product_id": "SWT-NVY-M", "quantity": 1}]}
ORDER = {"action": "create_order", "params": ARGS}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None: the demo SQLite file; else a fresh PostgreSQL copy of the demo (set up before the server,
    so the server stops before its database is dropped)."""
    if request.param == "sqlite":
        return None
    server = request.getfixturevalue("pg_server")
    return str(server.url(request.getfixturevalue("pg_db")))


@pytest.fixture
async def shop(database_url: str | None, make_server: Any) -> RunningServer:
    server: RunningServer = await make_server({"webhooks": {"url": "http://127.0.0.1:9/hooks"}},
                                              database_url=database_url)
    await server.create_key("writer", ("query", "action"))
    server.database_url = database_url  # type: ignore[attr-defined]
    return server


async def shop_sql(server: RunningServer, sql: str, *args: Any) -> list[Any]:
    url = server.database_url  # type: ignore[attr-defined]
    if url is None:
        conn = sqlite3.connect(server.bridge.paths.demo_db, isolation_level=None)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    con = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await con.fetch(sql, *args)]
    finally:
        await con.close()


async def orders(server: RunningServer) -> int:
    return (await shop_sql(server, "SELECT count(*) FROM orders"))[0][0]


async def state(server: RunningServer, sql: str, *args: Any) -> list[Any]:
    return await server.bridge.on_state(lambda: server.bridge.state.execute(sql, args).fetchall())


async def test_a_tracked_action_leaves_its_trace_inside_its_own_transaction(shop: RunningServer) -> None:
    status, _, _ = await shop.post("/action", ORDER, key=shop.keys["writer"], headers={"Idempotency-Key": "t-1"})
    assert status == 200
    assert await state(shop, "SELECT count(*) FROM intents") == [(0,)]
    assert await state(shop, "SELECT status, intent FROM idempotency") == [(idempotency.DONE, None)]
    assert [m.status for m in await shop.bridge.on_state(outbox.listing, shop.bridge.state,
                                                         [outbox.PENDING, outbox.DEAD])] == ["pending"]
    if shop.database_url is None:  # type: ignore[attr-defined]
        assert len(await shop_sql(shop, f"SELECT id FROM {TRACE_TABLE}")) == 1
    else:  # PostgreSQL: the transaction id is the trace; nothing is written to the owner's schema
        assert await shop_sql(shop, f"SELECT to_regclass('{TRACE_TABLE}') IS NULL") == [(True,)]


async def committed_trace(server: RunningServer, intent: str) -> int | None:
    """What a committed action leaves: its trace (SQLite) or its committed transaction id."""
    if server.database_url is None:  # type: ignore[attr-defined]
        await shop_sql(server, f"CREATE TABLE IF NOT EXISTS {TRACE_TABLE} (id TEXT PRIMARY KEY, at REAL NOT NULL) "
                               "WITHOUT ROWID")
        await shop_sql(server, f"INSERT INTO {TRACE_TABLE} VALUES (?, ?)", intent, time.time())
        return None
    con = await asyncpg.connect(server.database_url)  # type: ignore[attr-defined]
    try:
        async with con.transaction():
            return int(await con.fetchval("SELECT txid_current()"))
    finally:
        await con.close()


async def aborted_trace(server: RunningServer) -> int | None:
    if server.database_url is None:  # type: ignore[attr-defined]
        return None  # no trace row: that action never committed
    con = await asyncpg.connect(server.database_url)  # type: ignore[attr-defined]
    try:
        tx = con.transaction()
        await tx.start()
        xid = int(await con.fetchval("SELECT txid_current()"))
        await tx.rollback()
        return xid
    finally:
        await con.close()


def left_behind(conn: sqlite3.Connection, owner: str, intent: str, database: str, txid: int | None, idem: str,
                response: str, status: int = idempotency.PREPARED) -> None:
    """The rows a process leaves when it dies after recording an intent (step 2) and before step 4."""
    conn.execute("INSERT INTO intents (id, owner, database, txid, key_id, idem_key, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (intent, owner, database, txid, WRITER_ID[0], idem, time.time()))
    conn.execute("INSERT INTO idempotency (key_id, idem_key, fingerprint, status, response, created_at, owner, "
                 "intent) VALUES (?, ?, ?, ?, ?, datetime('now'), ?, ?)",
                 (WRITER_ID[0], idem, fingerprint("create_order", ARGS), status, response, owner, intent))
    outbox.hold(conn, intent, [(f"msg_{intent}", "order.created", '{"event":"order.created"}')], time.time())


WRITER_ID: list[str] = [""]


async def test_what_a_dead_process_left_is_settled_from_the_database(shop: RunningServer) -> None:
    bridge = shop.bridge
    WRITER_ID[0] = bridge.authenticate(shop.keys["writer"]).key_id
    database = bridge._db.describe()
    dead = uuid.uuid4().hex  # no lock file: its process is gone
    alive = ProcessLease(bridge.paths.data_dir)  # another running process (a sibling worker)
    intents = {name: uuid.uuid4().hex for name in ("committed", "aborted", "sibling", "elsewhere")}
    txids = {"committed": await committed_trace(shop, intents["committed"]), "aborted": await aborted_trace(shop)}

    def write() -> None:
        conn = bridge.state
        left_behind(conn, dead, intents["committed"], database, txids["committed"], "k-committed", '[{"id": 99}, 1]')
        left_behind(conn, dead, intents["aborted"], database, txids["aborted"], "k-aborted", '[{"id": 98}, 1]')
        left_behind(conn, alive.id, intents["sibling"], database, None, "k-sibling", '[{"id": 97}, 1]')
        left_behind(conn, dead, intents["elsewhere"], "SQLite file /some/other/shop.sqlite3", None, "k-elsewhere",
                    '[{"id": 96}, 1]')
        conn.execute("INSERT INTO idempotency (key_id, idem_key, fingerprint, status, response, created_at, owner) "
                     "VALUES (?, 'k-pending', ?, 0, '', datetime('now'), ?)",
                     (WRITER_ID[0], fingerprint("create_order", ARGS), dead))

    try:
        await bridge.on_state(write)
        assert await bridge.ledger.settle_abandoned() == 0
        rows = dict(await state(shop, "SELECT idem_key, status FROM idempotency"))
        assert rows == {"k-committed": idempotency.DONE, "k-sibling": idempotency.PREPARED}
        assert [i for (i,) in await state(shop, "SELECT id FROM intents")] == [intents["sibling"]]
        messages = {m.id: m for m in await bridge.on_state(outbox.listing, bridge.state,
                                                           [outbox.HELD, outbox.PENDING, outbox.DEAD])}
        assert messages[f"msg_{intents['committed']}"].status == outbox.PENDING
        assert f"msg_{intents['aborted']}" not in messages
        assert messages[f"msg_{intents['sibling']}"].status == outbox.HELD
        assert messages[f"msg_{intents['elsewhere']}"].status == outbox.DEAD
        assert "could not be confirmed" in (messages[f"msg_{intents['elsewhere']}"].last_error or "")

        key = shop.keys["writer"]
        before = await orders(shop)
        status, body, response = await shop.post("/action", ORDER, key=key, headers={"Idempotency-Key": "k-committed"})
        assert (status, body["data"], response.headers.get("Idempotent-Replayed")) == (200, {"id": 99}, "true")
        assert await orders(shop) == before
        for retried in ("k-aborted", "k-pending", "k-elsewhere"):  # never committed (or unknowable): it runs
            status, body, response = await shop.post("/action", ORDER, key=key, headers={"Idempotency-Key": retried})
            assert status == 200 and "Idempotent-Replayed" not in response.headers
        assert await orders(shop) == before + 3
        started = time.monotonic()
        sibling = asyncio.ensure_future(shop.post("/action", ORDER, key=key, headers={"Idempotency-Key": "k-sibling"}))
        await asyncio.sleep(0.5)
        assert not sibling.done()  # a live process's prepared action is its own to finish: a retry waits
        alive.close()  # ... until that process is gone; then it is settled at once (no trace: it runs)
        status, _, response = await sibling
        assert status == 200 and time.monotonic() - started < 3
        assert await orders(shop) == before + 4
    finally:
        alive.close()


# PostgreSQL only: a SQLite commit is decided when its writer's process ends.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgresql_still_deciding_a_commit_is_waited_for(shop: RunningServer) -> None:
    assert shop.database_url is not None  # type: ignore[attr-defined]
    bridge = shop.bridge
    WRITER_ID[0] = bridge.authenticate(shop.keys["writer"]).key_id
    con = await asyncpg.connect(shop.database_url)  # type: ignore[attr-defined]
    try:
        tx = con.transaction()
        await tx.start()
        xid = int(await con.fetchval("SELECT txid_current()"))
        intent = uuid.uuid4().hex
        await bridge.on_state(left_behind, bridge.state, uuid.uuid4().hex, intent, bridge._db.describe(), xid,
                              "k-deciding", '[{"id": 95}, 1]')
        assert await bridge.ledger.settle(intent, wait=0.3) is False  # "in progress": not settled yet
        retry = asyncio.ensure_future(shop.post("/action", ORDER, key=shop.keys["writer"],
                                                headers={"Idempotency-Key": "k-deciding"}))
        await asyncio.sleep(0.5)
        assert not retry.done()
        before = await orders(shop)
        await tx.commit()
        started = time.monotonic()
        status, body, response = await retry
        assert time.monotonic() - started < 2
        assert (status, body["data"], response.headers["Idempotent-Replayed"]) == (200, {"id": 95}, "true")
        assert await orders(shop) == before
    finally:
        await con.close()


async def test_two_mcp_calls_with_one_key_make_one_order_on_either_engine(shop: RunningServer) -> None:
    from tests.server.http.test_mcp_protocol import call, open_session

    key = shop.keys["writer"]
    session = await open_session(shop, key)
    before = await orders(shop)
    params = {"name": "create_order", "arguments": ARGS, "_meta": {"voka/idempotencyKey": "mcp-both"}}
    first = (await call(shop, key, session, "tools/call", params, request_id=1))[1]["result"]
    second = (await call(shop, key, session, "tools/call", params, request_id=2))[1]["result"]
    assert await orders(shop) == before + 1
    assert "_meta" not in first and second["_meta"] == {"voka/replayed": True}
    assert second["structuredContent"] == first["structuredContent"]
