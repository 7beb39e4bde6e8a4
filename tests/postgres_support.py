"""A real PostgreSQL server for the suite: a throwaway role and demo database per test session.

The session creates a non-superuser LOGIN role with a random password, loads the demo schema and rows
into a template database *as that role* (so it owns them, as a shop's own account would), and every
test gets its own fresh copy of the template. Everything is dropped at the end.

Where to find the server: `VOKA_TEST_PG_ADMIN_DSN` (a role that may create roles and databases), by
default `postgresql://postgres@127.0.0.1:5432/postgres` (trust auth on a developer machine; `.ci/run`
sets up a password-authenticated admin role and exports the variable). When no server answers, the
PostgreSQL tests skip with one reason; with `VOKA_TEST_REQUIRE_POSTGRES=1` (set by .ci/run) they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg
import pytest

ADMIN_DSN_ENV = "VOKA_TEST_PG_ADMIN_DSN"
REQUIRE_ENV = "VOKA_TEST_REQUIRE_POSTGRES"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEMO = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _ident(name: str) -> str:
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
    return name


@dataclass
class PgServer:
    """The reachable server, the session's role and template, and helpers to act as admin or owner."""

    admin_dsn: str
    role: str
    password: str
    template: str
    host: str
    port: int
    databases: list[str] = field(default_factory=list)

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{quote(self.password, safe='')}" if password else ""
        return f"postgresql://{self.role}{secret}@{self.host}:{self.port}/{database}"

    async def admin(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        con = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            return await con.fetch(sql, *args)
        finally:
            await con.close()

    async def owner(self, database: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run SQL as the owning role (what the shop's own tools would do), outside the bridge."""
        con = await asyncpg.connect(self.url(database), timeout=10)
        try:
            return await con.fetch(sql, *args)
        finally:
            await con.close()

    async def new_database(self) -> str:
        name = _ident(f"{self.template.replace('tmpl', 'db')}_{len(self.databases)}")
        self.databases.append(name)
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {self.template} OWNER {self.role}")
        return name

    async def drop_database(self, name: str) -> None:
        await self.admin(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    async def setup(self) -> None:
        await self.admin(f"CREATE ROLE {self.role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                         f"PASSWORD '{self.password}'")
        await self.admin(f"CREATE DATABASE {self.template} OWNER {self.role}")
        con = await asyncpg.connect(self.url(self.template), timeout=10)
        try:
            await con.execute((DEMO / "schema.postgresql.sql").read_text())
            await con.execute((DEMO / "data.sql").read_text())
            await con.execute("ANALYZE")
        finally:
            await con.close()

    async def teardown(self) -> None:
        for name in [*self.databases, self.template]:
            await self.drop_database(name)
        await self.admin(f"DROP ROLE IF EXISTS {self.role}")


def _unreachable_reason(dsn: str) -> str | None:
    async def probe() -> None:
        con = await asyncpg.connect(dsn, timeout=3)
        await con.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        where = urlsplit(dsn)
        return (f"no PostgreSQL server reachable at {where.hostname}:{where.port or 5432} "
                f"({type(exc).__name__}); set {ADMIN_DSN_ENV} to run these tests")
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    dsn = os.environ.get(ADMIN_DSN_ENV, DEFAULT_ADMIN_DSN)
    reason = _unreachable_reason(dsn)
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"PostgreSQL is required here ({REQUIRE_ENV}=1) but {reason}")
        pytest.skip(reason)
    tag = secrets.token_hex(4)
    where = urlsplit(dsn)
    server = PgServer(dsn, f"voka_test_{tag}", secrets.token_urlsafe(18), f"voka_tmpl_{tag}",
                      where.hostname or "127.0.0.1", where.port or 5432)
    asyncio.run(server.setup())
    try:
        yield server
    finally:
        asyncio.run(server.teardown())


@pytest.fixture
async def pg_db(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh copy of the demo database for one test; its name."""
    name = await pg_server.new_database()
    try:
        yield name
    finally:
        await pg_server.drop_database(name)


# ---- the local cluster as a service (restart tests) ------------------------------------------------
def local_cluster(port: int) -> tuple[str, str] | None:
    """(version, name) of the Debian-managed cluster on this port, when this machine runs it."""
    if not shutil.which("pg_lsclusters"):
        return None
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[2] == str(port):
            return cols[0], cols[1]
    return None


def pg_ctl(cluster: tuple[str, str], action: str) -> subprocess.CompletedProcess[str]:
    command = ["pg_ctlcluster", cluster[0], cluster[1], action]
    if action in ("start", "stop", "restart"):
        command.insert(1, "--skip-systemctl-redirect")
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def wait_ready(host: str, port: int, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(["pg_isready", "-q", "-h", host, "-p", str(port)]).returncode == 0:
            return True
        time.sleep(0.2)
    return False
