"""MCP benchmark: `tools/call` (2026-07-28 per-request envelope, no session) against Voka Bridge and, in the
same run, against the official SDK's own server (`MCPServer` from `mcp`) serving the same customer lookup on
the same demo SQLite database.

Each server runs in its own process (ours: `voka-bridge serve --demo` with audit log and rate limits on, the
limit raised so the benchmark measures the server rather than the limiter; the SDK's: uvicorn, JSON
responses, stateless). Both run for the whole benchmark, and the load generator (bench/load.py, 32 concurrent
clients) measures them in turn for --rounds rounds, keeping each one's median round, so a shared machine
whose speed drifts slows both alike. Prints a Markdown table for the README.

    python bench/mcp_bench.py [--duration 10] [--concurrency 32] [--generator wrk] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Result, Scenario, add_options, compare

PHONE = "+15558594448"
KEY = "bench-key-not-secret-0123456789abcdef"
VERSION = "2026-07-28"
LOOKUP = "SELECT id, name, email, phone, account_status, last_purchase FROM customers WHERE phone = ?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call_body(phone: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "find_customer_by_phone", "arguments": {"phone": phone},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": VERSION,
                                 "io.modelcontextprotocol/clientCapabilities": {},
                                 "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"}}}}


def call_headers(key: str | None = None) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": VERSION,
               "Mcp-Method": "tools/call", "Mcp-Name": "find_customer_by_phone"}
    if key:
        headers["x-api-key"] = key
    return headers


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} did not start")


def start_ours(home: Path, port: int, workers: int) -> subprocess.Popen[str]:
    (home / "config.toml").write_text("[rate_limit]\nrequests = 100000000\nwindow_seconds = 60\n"
                                      "max_concurrent_per_key = 1000\n")
    proc = subprocess.Popen([sys.executable, "-m", "server", "--demo", "--home", str(home),
                             "--port", str(port), "--workers", str(workers)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "MCP_API_KEY": KEY})
    assert proc.stdout is not None
    for line in proc.stdout:  # every worker is accepting once this line is out
        if line.startswith("listening on"):
            return proc
    raise SystemExit(f"bench: voka-bridge exited with {proc.wait()}")


def start_sdk(database: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--sdk-server", str(port), str(database)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc, "the SDK's MCPServer")
    return proc


def serve_sdk(port: int, database: str) -> None:
    """The SDK's own server with the same lookup: the reference the issue compares against."""
    from mcp.server.mcpserver import MCPServer

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    server = MCPServer("sdk-bench", log_level="WARNING")

    @server.tool()
    async def find_customer_by_phone(phone: str) -> dict[str, Any]:
        """Look up a customer by their phone number."""
        rows = [dict(row) for row in conn.execute(LOOKUP, (phone,)).fetchmany(2)]
        return {"rows": rows, "count": len(rows), "truncated": False}

    server.run(transport="streamable-http", host="127.0.0.1", port=port, json_response=True,
               stateless_http=True)


def table(results: list[Result]) -> str:
    lines = ["| scenario | requests/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.rps:,.0f} | {r.p50_ms} | {r.p99_ms} | {r.errors} |" for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_options(parser)
    parser.add_argument("--sdk-server", nargs=2, metavar=("PORT", "DATABASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sdk_server:
        serve_sdk(int(args.sdk_server[0]), args.sdk_server[1])
        return
    with tempfile.TemporaryDirectory(prefix="voka-mcp-bench-") as home:
        port, sdk_port = free_port(), free_port()
        ours = start_ours(Path(home), port, args.workers)
        try:
            sdk = start_sdk(Path(home) / "demo.sqlite3", sdk_port)
            try:
                results = compare(args, [
                    Scenario(f"Voka Bridge MCP tools/call (2026-07-28), {args.workers} worker(s)",
                             f"http://127.0.0.1:{port}/mcp", call_body(PHONE), call_headers(KEY)),
                    Scenario("SDK MCPServer tools/call (2026-07-28), same lookup",
                             f"http://127.0.0.1:{sdk_port}/mcp", call_body(PHONE), call_headers())])
            finally:
                sdk.terminate()
                sdk.wait(timeout=30)
        finally:
            ours.terminate()
            ours.wait(timeout=30)
    print(f"({args.concurrency} clients, {args.duration:g} s each, median of {args.rounds} alternating "
          f"rounds, load generator: {args.generator})")
    print(table(results))
    if results[1].rps:
        print(f"\nVoka Bridge / SDK: {results[0].rps / results[1].rps:.1f}x requests/s")


if __name__ == "__main__":
    main()
