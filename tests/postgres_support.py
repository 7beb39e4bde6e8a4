"""A real PostgreSQL server for the suite: a throwaway role and demo database per test session.

The session creates a non-superuser LOGIN role with a random password, loads the demo schema and rows
into a template database *as that role* (so it owns them, as a shop's own account would), takes from
PUBLIC in that database EXECUTE on the functions a READ ONLY transaction does not stop (as the SQL that
`voka-bridge check` prints does, server.db.pgsafety; copies of the template inherit it), and every test
gets its own fresh copy of the template. Everything is dropped at the end.

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
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from server.db.pgsafety import revoke_risky_sql

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

    async def admin(self, sql: str, *args: Any, database: str | None = None) -> list[asyncpg.Record]:
        """Run SQL as the admin role, in the admin DSN's database or in `database`."""
        dsn = self.admin_dsn
        if database is not None:
            parts = urlsplit(dsn)
            dsn = urlunsplit((parts.scheme, parts.netloc, "/" + _ident(database), parts.query, ""))
        con = await asyncpg.connect(dsn, timeout=10)
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
        await self.admin(revoke_risky_sql(self.role), database=self.template)

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


# ---- a private cluster: password auth, and restarts that disturb nobody else --------------------
def _server_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0])
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PrivateCluster:
    """A PostgreSQL server of our own (initdb in a temp folder, scram-sha-256 on 127.0.0.1, a free
    port), with the demo database owned by a non-superuser role: for password and restart tests."""

    bin: Path
    root: Path
    port: int
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    role: str = "shop_owner"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    database: str = "shop"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, *, password: str | None = None, user: str | None = None) -> str:
        secret = f":{quote(password, safe='')}" if password else ""
        return f"postgresql://{user or self.role}{secret}@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://voka_admin:{quote(self.admin_password, safe='')}@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)

    def pg_ctl(self, action: str, *extra: str) -> None:
        result = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                           "-w", "-t", "60", *extra, action)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed: {result.stderr or result.stdout}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self.pg_ctl("start", "-o", options)

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def running(self) -> bool:
        return subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                               str(self.port)]).returncode == 0

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(self.admin_password)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres")
        result = self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "voka_admin", "-E", "UTF8",
                           "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "--locale=C")
        pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr or result.stdout}")
        self.start()

        async def load() -> None:
            admin = await asyncpg.connect(self.admin_dsn, timeout=10)
            try:
                await admin.execute(f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.password}'")
                await admin.execute(f"CREATE DATABASE {self.database} OWNER {self.role}")
            finally:
                await admin.close()
            con = await asyncpg.connect(self.url(password=self.password), timeout=10)
            try:
                await con.execute((DEMO / "schema.postgresql.sql").read_text())
                await con.execute((DEMO / "data.sql").read_text())
            finally:
                await con.close()
            shop = f"postgresql://voka_admin:{quote(self.admin_password, safe='')}@127.0.0.1:{self.port}/{self.database}"
            admin = await asyncpg.connect(shop, timeout=10)
            try:  # as the SQL `voka-bridge check` prints does
                await admin.execute(revoke_risky_sql(self.role))
            finally:
                await admin.close()

        asyncio.run(load())

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_private() -> Iterator[PrivateCluster]:
    binaries = _server_bin()
    reason = None
    if binaries is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    elif os.geteuid() == 0 and not shutil.which("runuser"):
        reason = "running as root without runuser to start a private PostgreSQL as the postgres user"
    if reason:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"PostgreSQL is required here ({REQUIRE_ENV}=1) but {reason}")
        pytest.skip(reason)
    assert binaries is not None
    root = Path(tempfile.mkdtemp(prefix="voka-pg-"))
    root.chmod(0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cluster = PrivateCluster(binaries, root, port)
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.destroy()
