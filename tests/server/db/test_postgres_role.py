"""Side effects on PostgreSQL (issue 15, item 4), against the real server.

A READ ONLY transaction does not stop pg_terminate_backend / pg_cancel_backend on sessions of the same
role, pg_logical_emit_message, advisory locks or large objects: every role may call them by default. The
least-privilege SQL that `voka-bridge check` prints takes them away (a dedicated role, EXECUTE revoked);
the server refuses raw SQL through a role that still has any of them unless
`[database] allow_privileged_role = true`, and catalog tools keep working either way.

Each test builds its own database from template1 (not the suite's template, which already has the
REVOKEs), so the printed SQL is tested from a server's defaults.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from server.catalog import Catalog
from server.db.pgsafety import least_privilege_sql, revoke_risky_sql, written_tables
from server.paths import Paths
from tests.conftest import RunningServer
from tests.postgres_support import DEMO, PgServer, pg_db, pg_server  # noqa: F401

FIND = {"name": "find_customer_by_phone", "params": {"phone": "+15558594448"}}
NEW_CUSTOMER = {"action": "create_customer", "params": {"name": "Role Test", "phone": "+15550001111"}}


class Fresh:
    """A database made from template1 with the demo tables (owned by the admin), and roles to drop."""

    def __init__(self, pg: PgServer) -> None:
        self.pg = pg
        self.name = f"voka_role_{secrets.token_hex(4)}"
        self.roles: list[str] = []

    def dsn(self, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            parts = urlsplit(self.pg.admin_dsn)
            return urlunsplit((parts.scheme, parts.netloc, "/" + self.name, parts.query, ""))
        secret = f":{quote(password, safe='')}" if password else ""
        return f"postgresql://{user}{secret}@{self.pg.host}:{self.pg.port}/{self.name}"

    async def as_admin(self, script: str) -> None:
        con = await asyncpg.connect(self.dsn(), timeout=10)
        try:
            await con.execute(script)
        finally:
            await con.close()

    async def role(self, prefix: str, script: str = "") -> tuple[str, str]:
        name, password = f"{prefix}_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
        self.roles.append(name)
        await self.pg.admin(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        await self.as_admin(f"GRANT CONNECT ON DATABASE {self.name} TO {name}; GRANT USAGE ON SCHEMA public TO "
                            f"{name}; GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {name}; "
                            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}; {script}")
        return name, password


@pytest.fixture
async def fresh(pg_server: PgServer) -> AsyncIterator[Fresh]:  # noqa: F811
    made = Fresh(pg_server)
    await pg_server.admin(f"CREATE DATABASE {made.name} TEMPLATE template1")
    try:
        await made.as_admin((DEMO / "schema.postgresql.sql").read_text() + (DEMO / "data.sql").read_text())
        yield made
    finally:
        await pg_server.drop_database(made.name)
        for role in made.roles:
            await pg_server.admin(f"DROP ROLE IF EXISTS {role}")


def check(home: Path, url: str) -> subprocess.CompletedProcess[str]:
    """`voka-bridge check` on a home whose database is `url` (given as DATABASE_URL, password and all)."""
    env = {k: v for k, v in os.environ.items() if k != "MCP_API_KEY"}
    env["DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "server.cli", "check", "--home", str(home)],
                          capture_output=True, text=True, timeout=60, env=env)


async def test_a_role_made_with_the_printed_sql_cannot_signal_emit_wal_lock_or_touch_large_objects(
        make_server, fresh: Fresh, home: Paths) -> None:
    role = f"voka_bridge_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    fresh.roles.append(role)
    catalog = Catalog.load(home.tools_file)
    actions = [step.sql_for("postgresql") for tool in catalog if tool.kind == "action" for step in tool.steps]
    printed = least_privilege_sql(fresh.name, written_tables(actions), role)
    assert "REVOKE EXECUTE ON FUNCTION" in printed and "pg_signal_backend" in printed
    await fresh.as_admin(printed.replace("choose-a-long-random-password", password))
    url = fresh.dsn(role, password)

    running: RunningServer = await make_server({"rate_limit": {"requests": 10_000}}, database_url=url)
    key = await running.create_key("analyst", ("query", "action", "sql"))
    status, body, _ = await running.post("/query", {"query": "SELECT current_user AS me"}, key=key)
    assert status == 200 and body["data"] == [{"me": role}], body  # raw SQL is served through this role

    # another session of the same role: the owner's till software, say
    till = await asyncpg.connect(url, server_settings={"application_name": "till"})
    try:
        pid = till.get_server_pid()
        refused = {
            "terminate": ("SELECT pg_terminate_backend($1) AS done", [pid]),
            "cancel": ("SELECT pg_cancel_backend($1) AS done", [pid]),
            "wal": ("SELECT pg_logical_emit_message(false, 'voka', repeat('x', 1000000)) AS lsn", []),
            "wal transactional": ("SELECT pg_logical_emit_message(true, 'voka', 'x') AS lsn", []),
            "session lock": ("SELECT pg_advisory_lock(42) AS locked", []),
            "try lock": ("SELECT pg_try_advisory_lock(42) AS locked", []),
            "transaction lock": ("SELECT pg_advisory_xact_lock(42) AS locked", []),
            "large object": ("SELECT lo_create(0) AS oid", []),
            "large object from bytes": ("SELECT lo_from_bytea(0, 'x') AS oid", []),
            "large object read": ("SELECT lo_get(1) AS data", []),
        }
        for what, (sql, args) in refused.items():
            status, body, _ = await running.post("/query", {"query": sql, "args": args}, key=key)
            assert status == 403 and body["code"] == "permission_denied", (what, body)
            assert "permission denied for function" in body["error"], (what, body)
        assert await till.fetchval("SELECT 1") == 1  # still connected, never cancelled
    finally:
        await till.close()
    # what the catalog needs still works through this role
    status, body, _ = await running.post("/query", FIND, key=key)
    assert status == 200 and body["count"] == 1, body
    status, body, _ = await running.post("/action", NEW_CUSTOMER, key=key)
    assert status == 200, body

    # and `voka-bridge check` finds nothing to warn about
    checked = check(home.config_dir, url)
    assert checked.returncode == 0, checked.stderr
    assert "reachable" in checked.stdout and "warning" not in checked.stdout, checked.stdout


async def test_an_ordinary_role_as_postgres_makes_it_gets_raw_sql_refused_unless_allowed(
        make_server, fresh: Fresh, home: Paths) -> None:
    role, password = await fresh.role("voka_plain")
    url = fresh.dsn(role, password)
    refused: RunningServer = await make_server(database_url=url)
    key = await refused.create_key("analyst", ("query", "sql"))
    status, body, _ = await refused.post("/query", {"query": "SELECT 1 AS one"}, key=key)
    assert status == 403 and body["code"] == "privileged_role", body
    assert "can cancel or end other sessions of its own role" in body["error"], body
    assert "allow_privileged_role" in body["error"] and "voka-bridge check" in body["error"], body
    status, body, _ = await refused.post("/query", FIND, key=key)
    assert status == 200 and body["count"] == 1, body  # catalog tools still work
    await refused.host.stop()

    checked = check(home.config_dir, url)
    assert checked.returncode == 0, checked.stderr
    out = checked.stdout
    assert f"warning: the database role '{role}' can cancel or end other sessions of its own role" in out, out
    assert "can write to the write-ahead log" in out and "can take advisory locks" in out, out
    assert "can create, read or remove large objects" in out and "raw SQL through this role is refused" in out
    assert "REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC" in out, out

    # With the owner's opt-in raw SQL runs, and this is what it could do: end the till's session.
    allowed: RunningServer = await make_server({"database": {"allow_privileged_role": True}}, database_url=url)
    key = await allowed.create_key("analyst-2", ("query", "sql"))
    till = await asyncpg.connect(url, server_settings={"application_name": "till"})
    try:
        pid = till.get_server_pid()
        status, body, _ = await allowed.post("/query", {"query": "SELECT pg_terminate_backend($1, 5000) AS done",
                                                        "args": [pid]}, key=key)
        assert status == 200 and body["data"] == [{"done": True}], body
        gone = await fresh.pg.admin("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", pid)
        assert gone[0]["n"] == 0
    finally:
        till.terminate()


async def test_a_member_of_pg_signal_backend_gets_raw_sql_refused(make_server, fresh: Fresh) -> None:
    """Even with the functions revoked, membership of pg_signal_backend reaches other roles' sessions."""
    role, password = await fresh.role("voka_signal")
    await fresh.as_admin(revoke_risky_sql(role))
    await fresh.pg.admin(f"GRANT pg_signal_backend TO {role}")
    running: RunningServer = await make_server(database_url=fresh.dsn(role, password))
    key = await running.create_key("analyst", ("query", "sql"))
    status, body, _ = await running.post("/query", {"query": "SELECT 1 AS one"}, key=key)
    assert status == 403 and body["code"] == "privileged_role", body
    assert "pg_signal_backend" in body["error"], body
    status, body, _ = await running.post("/query", FIND, key=key)
    assert status == 200, body
