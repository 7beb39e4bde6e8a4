"""`serve --workers N` on PostgreSQL: pool_max bounds the whole server's connections, not each worker's."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from tests.conftest import free_port
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401

KEY = "workers-test-key-0123456789abcdef"
SLOW = {"query": "SELECT pg_sleep(0.3) AS slept, $1::int AS n", "args": [1]}


def ask(url: str, results: list[int]) -> None:
    request = urllib.request.Request(url + "/query", data=json.dumps(SLOW).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "x-api-key": KEY})
    with urllib.request.urlopen(request, timeout=30) as response:
        results.append(response.status)


async def connections(pg_server: PgServer, database: str) -> int:  # noqa: F811
    rows = await pg_server.admin("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1", database)
    return int(rows[0]["n"])


async def test_pool_max_is_the_whole_servers_share_split_over_workers(tmp_path: Path, pg_server: PgServer,  # noqa: F811
                                                                      pg_db: str) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[database]\nurl = "{pg_server.url(pg_db, password=False)}"\n'
                                      "pool_min = 1\npool_max = 4\nacquire_timeout_seconds = 20\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--home", str(home), "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MCP_API_KEY": KEY, "DATABASE_URL": pg_server.url(pg_db)})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("listening on"):
                break
        else:
            raise AssertionError(proc.stderr.read() if proc.stderr else "no output")
        url = f"http://127.0.0.1:{port}"
        results: list[int] = []
        callers = [threading.Thread(target=ask, args=(url, results)) for _ in range(24)]
        for caller in callers:
            caller.start()
        most = 0
        while any(caller.is_alive() for caller in callers):
            most = max(most, await connections(pg_server, pg_db))
            await asyncio.sleep(0.05)
        for caller in callers:
            caller.join()
        assert results == [200] * 24
        # each worker: its half of pool_max (of which this one key may hold half, server.handoff.Shares),
        # plus the one connection of its own that health checks use
        assert 4 <= most <= 2 + 2 + 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
