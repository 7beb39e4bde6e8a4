"""What a lookup costs in CPU instructions: this tree against an earlier one (`--anchor`), both engines.

Requests per second on a shared 2-core machine move by 5 to 15% between rounds of ten seconds, more than
the difference between two versions of the server; instructions do not. Each server runs alone under
valgrind's callgrind (one process, the default settings, as the README runs it), is warmed up with
sequential lookups, and is then counted while wrk keeps 32 connections busy for `--seconds`: every
instruction of every thread of the process, divided by the lookups answered. The pool's queues, the
concurrency places and the audit writer are counted as they work under load, and so is what the server
does while idle in that time (nothing measurable). PostgreSQL's own work is not counted (it runs in its
processes, the same for both versions: the same statements and round trips).

    python bench/instructions.py --anchor DIR [--seconds 30] [--engines sqlite,postgresql]

Needs valgrind and wrk; the PostgreSQL scenarios need an admin DSN as bench/pg_bench.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pg_bench
from load import run_wrk, serve_command, write_config
from rest_bench import KEY, PHONE, free_port

RAW = "SELECT name, account_status, last_purchase FROM customers WHERE phone = $1"
WARM_UP = 300


def bodies(phone: str) -> dict[str, dict]:
    return {"catalog lookup": {"name": "find_customer_by_phone", "params": {"phone": phone}},
            "raw SQL lookup": {"query": RAW, "args": [phone]}}


def count(source: Path | None, home: Path, body: dict, seconds: float, *, demo: bool,
          env: dict[str, str]) -> tuple[int, int]:
    """(instructions, lookups answered) of one server (its config.toml in `home`) under wrk for `seconds`."""
    port = free_port()
    out = home / "callgrind.out"
    command, cwd = serve_command(source)
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}", *command, "--home", str(home),
                             "--port", str(port), *(["--demo"] if demo else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd, env=env)
    try:
        pg_bench.wait_line(proc, "listening on", "voka-bridge under valgrind")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"x-api-key": KEY, "Content-Type": "application/json"}
        for _ in range(WARM_UP):
            connection.request("POST", "/query", json.dumps(body), headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"bench: the server answered {response.status}: {answer[:200]!r}")
        connection.close()
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True)
        result = run_wrk("count", f"http://127.0.0.1:{port}/query", body, {"x-api-key": KEY},
                         concurrency=32, duration=seconds)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
        if result.errors:
            raise SystemExit(f"bench: {result.errors} lookups failed under valgrind")
        dumps = sorted(home.glob("callgrind.out.*"))
        summary = re.search(r"^summary:\s+(\d+)", dumps[-1].read_text(), re.M)
        if summary is None:
            raise SystemExit("bench: no instruction count in callgrind's dump")
        return int(summary.group(1)), result.requests
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anchor", type=Path, required=True,
                        help="the earlier source tree (git worktree add DIR COMMIT)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--admin-dsn", default=os.environ.get(
        "VOKA_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if not shutil.which(tool):
            raise SystemExit(f"bench: {tool} is not installed (apt-get install valgrind wrk)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="voka-bench-") as temp:
        plans: list[tuple[str, str, dict, bool, dict[str, str]]] = []
        base_env = {**os.environ, "MCP_API_KEY": KEY}
        if "sqlite" in args.engines:
            for name, body in bodies(PHONE).items():
                plans.append(("SQLite demo", name, body, True, base_env))
        password = secrets.token_hex(16)
        if "postgresql" in args.engines:
            asyncio.run(pg_bench.build_database(args.admin_dsn, password))
            port = pg_bench._port(args.admin_dsn)
            url = f"postgresql://{pg_bench.ROLE}:{password}@127.0.0.1:{port}/{pg_bench.DATABASE}"
            for name, body in bodies(pg_bench.PHONE).items():
                plans.append(("PostgreSQL, 100,000 customers", name, body, False,
                              {**base_env, "DATABASE_URL": url}))
        try:
            for number, (engine, name, body, demo, env) in enumerate(plans):
                counted = {}
                for label, source in (("now", None), ("anchor", args.anchor)):
                    home = Path(temp) / f"{number}-{label}"
                    home.mkdir()
                    write_config(home, env.get("DATABASE_URL"))
                    instructions, lookups = count(source, home, body, args.seconds, demo=demo, env=env)
                    counted[label] = instructions / lookups
                    print(f"bench: {engine}, {name}, {label}: {counted[label]:,.0f} instructions per lookup "
                          f"({lookups:,} lookups)", file=sys.stderr)
                cost = counted["now"] / counted["anchor"] - 1
                rows.append(f"| {name}, {engine} | {counted['now']:,.0f} | {counted['anchor']:,.0f} | "
                            f"{cost:+.1%} |")
        finally:
            if "postgresql" in args.engines:
                asyncio.run(pg_bench.drop_database(args.admin_dsn))
    print(f"(callgrind, every thread of one server process, wrk with 32 connections for {args.seconds:g} s "
          "after a warm-up)")
    print("| scenario | instructions per lookup, now | before | cost |\n|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
