"""PostgreSQL benchmark: the seed-style raw lookup on 100,000 customers, against a minimal Express server.

Builds a throwaway database (`voka_bench`, owned by a non-superuser role) with 100,000 customers, then
measures, with the same closed-loop load generator (bench/load.py, 32 clients):

- Voka Bridge (`python -m server serve`, audit log and per-key rate limits on, the limit raised so the
  benchmark measures the server rather than the limiter; the password comes from DATABASE_URL):
  the seed-style raw lookup, and the catalog tool find_customer_by_phone;
- a minimal Node.js Express + node-postgres server doing the same raw lookup (installed from npm into a
  temp folder; skipped with a note when npm cannot install it).

All servers run for the whole benchmark (with --fresh, Voka Bridge's are started anew each round) and are
measured in turn for --rounds rounds (each one's median round is reported), so a shared machine whose
speed drifts slows them alike. With --anchor, each Voka Bridge scenario runs right after the anchor's and
the cost is the median of the per-round losses.

    python bench/pg_bench.py [--duration 10] [--concurrency 32] [--admin-dsn postgresql://...]

The admin DSN (default VOKA_TEST_PG_ADMIN_DSN, else postgresql://postgres@127.0.0.1:5432/postgres) only
creates and drops the bench role and database. Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import (
    Result,
    Scenario,
    add_options,
    cost_lines,
    costs,
    median_round,
    paired,
    run_rounds,
    serve_command,
    start_trees,
    stop_all,
    write_config,
)

from server.db.pgsafety import revoke_risky_sql

ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = 100_000
PHONE = "+15550054321"  # customer 54,321 of the generated ones
KEY = "bench-key-not-secret-0123456789abcdef"
SQL = "SELECT name, account_status, last_purchase FROM customers WHERE phone = $1"
ROLE, DATABASE = "voka_bench", "voka_bench"

EXPRESS_SERVER = """
const express = require("express");
const { Pool } = require("pg");
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const app = express();
app.use(express.json());
app.post("/query", async (req, res) => {
  if (req.get("x-api-key") !== process.env.MCP_API_KEY) return res.status(401).json({ success: false });
  try {
    const result = await pool.query(req.body.query, req.body.args || []);
    res.json({ success: true, data: result.rows });
  } catch (err) {
    res.status(500).json({ success: false, error: err.message });
  }
});
const server = app.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => server.close(() => pool.end().then(() => process.exit(0))));
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def build_database(admin_dsn: str, password: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
        await admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
        await admin.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    finally:
        await admin.close()
    con = await asyncpg.connect(user=ROLE, password=password, host="127.0.0.1", port=_port(admin_dsn),
                                database=DATABASE)
    try:
        await con.execute((ROOT / "resources" / "demo" / "schema.postgresql.sql").read_text())
        await con.execute(f"""
            INSERT INTO customers (name, email, phone, account_status, last_purchase)
            SELECT 'Customer ' || i, 'customer' || i || '@example.com', '+1555' || lpad(i::text, 7, '0'),
                   (ARRAY['active', 'active', 'active', 'vip', 'suspended'])[1 + i % 5],
                   DATE '2026-01-01' - (i % 700)
            FROM generate_series(1, {CUSTOMERS}) AS i""")
        await con.execute("VACUUM ANALYZE customers")
    finally:
        await con.close()
    # the least-privilege SQL's REVOKEs (server.db.pgsafety), without which raw SQL is refused
    parts = urlsplit(admin_dsn)
    admin = await asyncpg.connect(urlunsplit((parts.scheme, parts.netloc, "/" + DATABASE, parts.query, "")))
    try:
        await admin.execute(revoke_risky_sql(ROLE))
    finally:
        await admin.close()


async def drop_database(admin_dsn: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
    finally:
        await admin.close()


def _port(dsn: str) -> int:
    return urlsplit(dsn).port or 5432


def wait_line(proc: subprocess.Popen[str], prefix: str, what: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(prefix):
            return
    raise SystemExit(f"bench: {what} did not start")


def start_bridge(home: Path, port: int, database_url: str, workers: int,
                 source: Path | None = None) -> subprocess.Popen[str]:
    """config.toml names the database without its password; DATABASE_URL (headless) carries it."""
    write_config(home, database_url)
    env = {**os.environ, "MCP_API_KEY": KEY, "DATABASE_URL": database_url}
    command, cwd = serve_command(source)
    proc = subprocess.Popen([*command, "--home", str(home), "--port", str(port), "--workers", str(workers)],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    wait_line(proc, "listening on", "voka-bridge")
    return proc


def start_in(bridges: list[subprocess.Popen[str]], home: Path, database_url: str, workers: int,
             source: Path | None = None) -> str:
    """Start a Voka Bridge server in `home` (kept in `bridges` to stop later); its /query URL."""
    home.mkdir(parents=True)
    port = free_port()
    bridges.append(start_bridge(home, port, database_url, workers, source))
    return f"http://127.0.0.1:{port}/query"


def start_express(folder: Path, port: int, database_url: str) -> subprocess.Popen[str] | None:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        print("bench: node/npm not found; skipping the Express comparison", file=sys.stderr)
        return None
    installed = subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund",
                                "--loglevel=error", "express@4", "pg@8"], capture_output=True, text=True)
    if installed.returncode != 0:
        print(f"bench: npm could not install express and pg; skipping ({installed.stderr.strip()[:200]})",
              file=sys.stderr)
        return None
    (folder / "server.js").write_text(EXPRESS_SERVER)
    env = {**os.environ, "PORT": str(port), "DATABASE_URL": database_url, "MCP_API_KEY": KEY,
           "NODE_ENV": "production"}
    proc = subprocess.Popen([node, "server.js"], cwd=folder, stdout=subprocess.PIPE, text=True, env=env)
    wait_line(proc, "listening", "the Express server")
    return proc


async def check_answer(url: str) -> None:
    """Both servers must answer the lookup correctly before they are timed."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(
            url, json={"query": SQL, "args": [PHONE]}, headers={"x-api-key": KEY}) as response:
        body = await response.json()
    if response.status != 200 or body["data"][0]["name"] != "Customer 54321":
        raise SystemExit(f"bench: wrong answer from {url}: {response.status} {body}")


def table(results: list[Result]) -> str:
    lines = ["| scenario (PostgreSQL, 100,000 customers) | requests/s | p50 ms | p99 ms | errors |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.rps:,.0f} | {r.p50_ms} | {r.p99_ms} | {r.errors} |" for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser)
    parser.add_argument("--admin-dsn", default=os.environ.get(
        "VOKA_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    args = parser.parse_args()
    headers = {"x-api-key": KEY}

    password = secrets.token_hex(16)
    started = time.monotonic()
    asyncio.run(build_database(args.admin_dsn, password))
    print(f"bench: {CUSTOMERS:,} customers loaded in {time.monotonic() - started:.1f} s", file=sys.stderr)
    database_url = f"postgresql://{ROLE}:{password}@127.0.0.1:{_port(args.admin_dsn)}/{DATABASE}"
    raw = {"query": SQL, "args": [PHONE]}
    try:
        with tempfile.TemporaryDirectory(prefix="voka-pgbench-") as temp:
            node_dir = Path(temp) / "express"
            node_dir.mkdir()
            bridges: list[subprocess.Popen[str]] = []
            homes = itertools.count(1)

            def serve_all() -> list[Scenario]:
                """(Re)start Voka Bridge (and the anchor's), each in a new home; their scenarios."""
                def start(folder: Path, source: Path | None) -> str:
                    return start_in(bridges, folder, database_url, args.workers, source)

                urls = start_trees(bridges, Path(temp), next(homes), args.anchor, start)
                asyncio.run(check_answer(urls[None]))
                catalog = {"name": "find_customer_by_phone", "params": {"phone": PHONE}}
                plan = [Scenario("Voka Bridge: seed-style raw SQL lookup", urls[None], raw, headers),
                        Scenario("Voka Bridge: find_customer_by_phone (catalog query)", urls[None], catalog,
                                 headers)]
                if args.anchor is not None:
                    plan += [Scenario(f"anchor: {s.name.removeprefix('Voka Bridge: ')}", urls[args.anchor],
                                      s.body, headers, anchor_for=s.name) for s in plan]
                return paired(plan)

            servers: list[subprocess.Popen[str]] = []  # those not restarted: the Express server
            try:
                scenarios = serve_all()
                express_port = free_port()
                express = start_express(node_dir, express_port, database_url)
                extra = []
                if express is not None:
                    servers.append(express)
                    express_url = f"http://127.0.0.1:{express_port}/query"
                    asyncio.run(check_answer(express_url))
                    extra = [Scenario("Express + node-postgres: same raw lookup", express_url, raw, headers)]
                scenarios += extra
                rounds = run_rounds(args, scenarios, restart=lambda: serve_all() + extra)
            finally:
                stop_all(servers)
                stop_all(bridges)
    finally:
        if not args.keep:
            asyncio.run(drop_database(args.admin_dsn))
    print(f"({args.concurrency} clients, {args.duration:g} s each, median of {args.rounds} alternating "
          f"rounds{', fresh servers each round' if args.fresh else ''}, load generator: {args.generator}, "
          f"Voka Bridge workers: {args.workers})")
    print(table([median_round(results) for results in rounds]))
    if args.anchor is not None:
        print("\n" + cost_lines(costs(scenarios, rounds)))


if __name__ == "__main__":
    main()
