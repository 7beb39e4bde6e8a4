"""kill -9 in the middle of an action, then a restart: the retry with the same Idempotency-Key is settled at
once (not after the old 30 s wait and 504), with the right outcome, and the action's webhook event is
sent exactly as often as the action happened. Real `voka-bridge serve` processes, real signals, a real
receiver; SQLite and PostgreSQL.

- Killed while the action's statements run: nothing committed, so the retry runs it (one order).
- Killed while PostgreSQL commits (a deferred trigger makes the COMMIT take seconds, so the kill lands
  after our record of the intent and before the commit's outcome is known): PostgreSQL finishes the
  commit on its own, and the retry gets that order's answer as a replay.
(The SQLite version of the second case cannot be timed from outside, a SQLite COMMIT takes microseconds;
tests/server/test_ledger.py settles the rows such a crash leaves, on both engines.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.bundled import bundled_text, ensure_demo_database
from tests.conftest import free_port
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401  (fixtures)
from tests.server.webhook_receiver import Receiver

SLOW_TOOL = '''
[tools.slow_order]
kind = "action"
description = "Records an order; slow while the table slow_flag has a row (for these tests)."
events = ["order.created"]

[tools.slow_order.params.customer_id]
type = "integer"

[[tools.slow_order.steps]]
[tools.slow_order.steps.sql]
sqlite = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < (SELECT coalesce(max(n), 0) FROM slow_flag)) SELECT count(*) AS n FROM c"
postgresql = "SELECT pg_sleep(coalesce((SELECT max(n) FROM slow_flag), 0)) AS slept"

[[tools.slow_order.steps]]
sql = "INSERT INTO orders (customer_id, items, status) VALUES (:customer_id, '[]', 'pending') RETURNING id, customer_id, status"
'''
SLOW_ORDER = {"action": "slow_order", "params": {"customer_id": 5}}
ORDER = {"action": "create_order", "params": {"customer_id": 5, "items": [{"product_id": "SWT-NVY-M", "quantity": 1}]}}


class Serve:
    """`voka-bridge serve` on a home folder, output in files (a full pipe would stall it)."""

    def __init__(self, home: Path, *, demo: bool, env: dict[str, str]) -> None:
        self.port = free_port()
        self.out = home / f"serve-{self.port}.out"
        command = [sys.executable, "-m", "server.cli", "serve", "--home", str(home), "--port", str(self.port)]
        with self.out.open("w") as out:
            self.proc = subprocess.Popen(command + (["--demo"] if demo else []), stdout=out,
                                         stderr=subprocess.STDOUT, env={**os.environ, **env})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "listening on " in self.text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"serve did not start: {self.text()}")

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def first_key(self) -> str:
        return next(line.strip() for line in self.text().splitlines() if line.strip().startswith("vbk_"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def post(url: str, body: dict[str, Any], key: str, idem: str, timeout: float = 60
         ) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url + "/action", data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "x-api-key": key, "Idempotency-Key": idem})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def in_background(url: str, body: dict[str, Any], key: str, idem: str) -> threading.Thread:
    """The call that is cut off by the kill (its connection just drops)."""
    def send() -> None:
        with contextlib.suppress(Exception):
            post(url, body, key, idem)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def wait_for_idempotency_status(home: Path, status: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = sqlite3.connect(f"file:{home / 'state.sqlite3'}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM idempotency WHERE status = ?", (status,)).fetchone():
                return
        except sqlite3.OperationalError:
            pass
        finally:
            conn.close()
        time.sleep(0.02)
    raise AssertionError(f"no idempotency record reached status {status}")


def prepare_home(home: Path, receiver: Receiver) -> None:
    home.mkdir(parents=True)
    (home / "tools.toml").write_text(bundled_text("tools.toml") + SLOW_TOOL)
    (home / "config.toml").write_text(
        "[limits]\nquery_timeout_seconds = 60\nrequest_timeout_seconds = 120\n"
        f'[webhooks]\nurl = "{receiver.url}"\nfirst_retry_seconds = 0.2\ntimeout_seconds = 2\n')


@pytest.fixture
def receiver() -> Any:
    running = Receiver(free_port()).start()
    yield running
    running.stop()


def events_for(receiver: Receiver, order_id: int, settle: float = 1.5) -> list[Any]:
    time.sleep(settle)  # room for a duplicate that should not come
    return [d for d in receiver.received() if d.json["event"] == "order.created" and d.json["data"]["id"] == order_id]


def test_sqlite_killed_mid_action_the_retry_runs_it_at_once(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    prepare_home(home, receiver)
    ensure_demo_database(home / "demo.sqlite3")
    shop = sqlite3.connect(home / "demo.sqlite3", isolation_level=None)
    shop.execute("CREATE TABLE slow_flag (n INTEGER)")
    shop.execute("INSERT INTO slow_flag VALUES (2000000000)")  # the first attempt would run for minutes
    before = shop.execute("SELECT count(*) FROM orders").fetchone()[0]
    first = Serve(home, demo=True, env={})
    key = first.first_key()
    in_background(first.url, SLOW_ORDER, key, "crash-sqlite-1")
    wait_for_idempotency_status(home, 0)
    time.sleep(0.5)
    first.kill()
    shop.execute("DELETE FROM slow_flag")
    second = Serve(home, demo=True, env={})
    try:
        started = time.monotonic()
        status, body, headers = post(second.url, SLOW_ORDER, key, "crash-sqlite-1")
        assert time.monotonic() - started < 5, "the retry waited for the dead process's claim"
        assert status == 200 and "Idempotent-Replayed" not in headers
        assert shop.execute("SELECT count(*) FROM orders").fetchone()[0] == before + 1
        again = post(second.url, SLOW_ORDER, key, "crash-sqlite-1")
        assert again[0] == 200 and again[1] == body and again[2]["Idempotent-Replayed"] == "true"
        assert len(events_for(receiver, body["data"]["id"])) == 1
        assert len(list((home / "instances").iterdir())) == 1  # the dead process's lock file was tidied away
    finally:
        second.stop()
        shop.close()


@pytest.fixture
async def pg_shop(pg_server: PgServer, pg_db: str) -> tuple[PgServer, str]:  # noqa: F811
    await pg_server.owner(pg_db, "CREATE TABLE slow_flag (n INTEGER)")
    await pg_server.owner(pg_db, "CREATE TABLE slow_commit (n INTEGER)")
    await pg_server.owner(pg_db, """
        CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(coalesce((SELECT max(n) FROM slow_commit), 0)); RETURN NULL; END $$""")
    await pg_server.owner(pg_db, "CREATE CONSTRAINT TRIGGER orders_slow_commit AFTER INSERT ON orders "
                                 "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()")
    return pg_server, pg_db


async def pg_count(url: str, sql: str) -> Any:
    con = await asyncpg.connect(url)
    try:
        return await con.fetchval(sql)
    finally:
        await con.close()


async def test_postgresql_killed_mid_action_the_retry_runs_it_at_once(tmp_path: Path, receiver: Receiver,
                                                                      pg_shop: tuple[PgServer, str]) -> None:
    pg, db = pg_shop
    url = pg.url(db)
    await pg.owner(db, "INSERT INTO slow_flag VALUES (30)")
    home = tmp_path / "home"
    prepare_home(home, receiver)
    before = await pg_count(url, "SELECT count(*) FROM orders")
    env = {"DATABASE_URL": url}
    first = Serve(home, demo=False, env=env)
    key = first.first_key()
    in_background(first.url, SLOW_ORDER, key, "crash-pg-1")
    wait_for_idempotency_status(home, 0)
    time.sleep(0.5)
    first.kill()
    await pg.owner(db, "DELETE FROM slow_flag")
    second = Serve(home, demo=False, env=env)
    try:
        started = time.monotonic()
        status, body, headers = post(second.url, SLOW_ORDER, key, "crash-pg-1")
        assert time.monotonic() - started < 5, "the retry waited for the dead process's claim"
        assert status == 200 and "Idempotent-Replayed" not in headers
        assert await pg_count(url, "SELECT count(*) FROM orders") == before + 1
        assert len(events_for(receiver, body["data"]["id"])) == 1
    finally:
        second.stop()  # (the dead process's backend still sleeps; dropping the database ends it)


async def test_postgresql_killed_while_committing_the_retry_replays_the_commit(
        tmp_path: Path, receiver: Receiver, pg_shop: tuple[PgServer, str]) -> None:
    pg, db = pg_shop
    url = pg.url(db)
    await pg.owner(db, "INSERT INTO slow_commit VALUES (4)")  # each COMMIT of an order takes 4 s
    home = tmp_path / "home"
    prepare_home(home, receiver)
    before = await pg_count(url, "SELECT count(*) FROM orders")
    env = {"DATABASE_URL": url}
    first = Serve(home, demo=False, env=env)
    key = first.first_key()
    in_background(first.url, ORDER, key, "crash-pg-commit")
    wait_for_idempotency_status(home, 1)  # the intent is recorded: the COMMIT is on its way
    time.sleep(0.3)
    first.kill()
    killed_at = time.monotonic()
    await pg.owner(db, "DELETE FROM slow_commit")
    second = Serve(home, demo=False, env=env)
    try:
        status, body, headers = post(second.url, ORDER, key, "crash-pg-commit")
        waited = time.monotonic() - killed_at
        assert waited < 12, f"the retry took {waited:.1f} s after the kill"
        assert status == 200 and headers.get("Idempotent-Replayed") == "true", body
        assert await pg_count(url, "SELECT count(*) FROM orders") == before + 1  # PostgreSQL committed it
        assert await pg_count(url, f"SELECT count(*) FROM orders WHERE id = {int(body['data']['id'])}") == 1
        assert len(events_for(receiver, body["data"]["id"])) == 1  # its event, released by the settle
        settled = [json.loads(line) for line in (home / "logs" / "combined.log").read_text().splitlines()
                   if "settled an action" in line]
        assert [entry["outcome"] for entry in settled] == ["committed"], settled
    finally:
        second.stop()
