"""`voka-bridge check` has the database prepare every tool's SQL (running none of it) and names each tool
it does not accept, with the database's own message, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.postgres_support import PgServer, pg_server  # noqa: F401  (fixture)

BROKEN_TOOLS = """

[tools.broken_lookup]
kind = "query"
description = "A typo and a wrong table name."
sql = "SELEC name FROM productz WHERE"

[tools.empty_the_shop]
kind = "action"
description = "Would change every table if it ran."
[[tools.empty_the_shop.steps]]
sql = "DELETE FROM orders"
[[tools.empty_the_shop.steps]]
sql = "UPDATE inventory SET quantity = 0"
[[tools.empty_the_shop.steps]]
sql = "DELETE FROM customerz"
"""


def run_check(home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MCP_API_KEY")}
    return subprocess.run([sys.executable, "-m", "server.cli", "check", "--home", str(home)],
                          capture_output=True, text=True, timeout=60, env={**environment, **(env or {})})


def sqlite_digest(path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(path) as conn:
        return (conn.execute("SELECT count(*) FROM orders").fetchone()[0],
                conn.execute("SELECT sum(quantity) FROM inventory").fetchone()[0],
                conn.execute("SELECT count(*) FROM customers").fetchone()[0])


def test_check_names_every_tool_a_database_without_the_tables_refuses(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok = run_check(home)
    assert ok.returncode == 0, ok.stderr
    assert "catalog: ok, 5 tool(s), each prepared on the database" in ok.stdout
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    (home / "config.toml").write_text(f'[database]\nurl = "sqlite:///{empty}"\n')
    result = run_check(home)
    assert result.returncode == 1
    assert "reachable, 0 table(s)" in result.stdout and "catalog: ok" not in result.stdout
    assert "5 of 5 tool(s)" in result.stderr and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for name, says in (("find_customer_by_phone", "no such table: customers"),
                       ("check_inventory", "no such table: inventory"),
                       ("get_order_status", "no such table: orders"),
                       ("create_customer", "no such table: customers"),
                       ("create_order", "step 1: no such table: customers")):
        assert f"  {name}: {says}" in lines, (name, result.stderr)


def test_check_prepares_actions_on_sqlite_without_running_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_check(home).returncode == 0
    before = sqlite_digest(home / "demo.sqlite3")
    with (home / "tools.toml").open("a") as tools:
        tools.write(BROKEN_TOOLS)
    result = run_check(home)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "2 of 7 tool(s)" in result.stderr
    assert '  broken_lookup: near "SELEC": syntax error' in lines
    assert "  empty_the_shop: step 3: no such table: customerz" in lines
    assert not [line for line in lines if "step 1" in line or "step 2" in line]
    assert sqlite_digest(home / "demo.sqlite3") == before


def test_check_on_postgresql_names_the_failing_tools_and_runs_nothing(tmp_path: Path,
                                                                     pg_server: PgServer) -> None:  # noqa: F811
    database = asyncio.run(pg_server.new_database())
    env = {"DATABASE_URL": pg_server.url(database)}
    home = tmp_path / "home"

    def digest() -> tuple[int, int, int]:
        row = asyncio.run(pg_server.owner(database, "SELECT (SELECT count(*) FROM orders) AS o, "
                                                    "(SELECT sum(quantity) FROM inventory) AS q, "
                                                    "(SELECT count(*) FROM customers) AS c"))[0]
        return row["o"], row["q"], row["c"]

    try:
        ok = run_check(home, env)
        assert ok.returncode == 0, ok.stderr
        assert "PostgreSQL database" in ok.stdout and "catalog: ok, 5 tool(s)" in ok.stdout
        before = digest()
        with (home / "tools.toml").open("a") as tools:
            tools.write(BROKEN_TOOLS)
        result = run_check(home, env)
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert '  broken_lookup: syntax error at or near "SELEC"' in lines
        assert '  empty_the_shop: step 3: relation "customerz" does not exist' in lines
        assert pg_server.password not in result.stdout + result.stderr
        assert digest() == before
    finally:
        asyncio.run(pg_server.drop_database(database))
