"""REST benchmark on the demo SQLite database: find_customer_by_phone and the seed-style raw lookup.

Starts `voka-bridge serve --demo` in a temp home (audit log and rate limits on, the limit raised so the
benchmark measures the server rather than the limiter), runs 32 concurrent clients per scenario in
another process, prints a Markdown table for the README.

    python bench/rest_bench.py [--duration 10] [--concurrency 32] [--generator wrk] [--workers 2] [--rounds 3]
                               [--anchor DIR [--fresh]]
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

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

PHONE = "+15558594448"
KEY = "bench-key-not-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int, workers: int, source: Path | None = None) -> subprocess.Popen[str]:
    write_config(home)
    command, cwd = serve_command(source)
    proc = subprocess.Popen([*command, "--demo", "--home", str(home), "--port", str(port),
                             "--workers", str(workers)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "MCP_API_KEY": KEY},
                            cwd=cwd)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("listening on"):
            return proc
    raise SystemExit("bench: the server did not start")


def start(servers: list[subprocess.Popen[str]], home: Path, workers: int, source: Path | None = None) -> str:
    """Start a server (kept in `servers` to stop later); its base URL."""
    home.mkdir(parents=True)
    port = free_port()
    servers.append(start_server(home, port, workers, source))
    return f"http://127.0.0.1:{port}"


def table(results: list[Result]) -> str:
    lines = ["| scenario | requests/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.rps:,.0f} | {r.p50_ms} | {r.p99_ms} | {r.errors} |" for r in results]
    return "\n".join(lines)


def scenarios(url: str, anchor: bool = False) -> list[Scenario]:
    headers = {"x-api-key": KEY}
    catalog, raw = "REST find_customer_by_phone (catalog query)", "REST seed-style raw SQL lookup"
    label = " (anchor)" if anchor else ""
    return [
        Scenario(catalog + label, url + "/query",
                 {"name": "find_customer_by_phone", "params": {"phone": PHONE}}, headers,
                 anchor_for=catalog if anchor else None),
        Scenario(raw + label, url + "/query",
                 {"query": "SELECT name, account_status, last_purchase FROM customers WHERE phone = $1",
                  "args": [PHONE]}, headers, anchor_for=raw if anchor else None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="voka-bench-") as temp:
        servers: list[subprocess.Popen[str]] = []
        homes = itertools.count(1)

        def serve_all() -> list[Scenario]:
            """(Re)start this tree's server and the anchor's, each in a new home; the scenarios to run."""
            urls = start_trees(servers, Path(temp), next(homes), args.anchor,
                               lambda folder, source: start(servers, folder, args.workers, source))
            if args.anchor is None:
                return scenarios(urls[None])
            return paired(scenarios(urls[None]) + scenarios(urls[args.anchor], anchor=True))

        try:
            plan = serve_all()
            rounds = run_rounds(args, plan, restart=serve_all)
        finally:
            stop_all(servers)
    print(f"({args.concurrency} clients, {args.duration:g} s each, median of {args.rounds} alternating "
          f"rounds{', fresh servers each round' if args.fresh else ''}, load generator: {args.generator}, "
          f"Voka Bridge workers: {args.workers})")
    print(table([median_round(results) for results in rounds]))
    if args.anchor is not None:
        print("\n" + cost_lines(costs(plan, rounds)))


if __name__ == "__main__":
    main()
