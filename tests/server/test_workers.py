"""`serve --workers 2` as a person runs it: a real supervisor, real worker processes, one real port.

Which worker took a connection is read from the operating system (/proc: the worker processes under the
supervisor, and the sockets each one holds), never from anything the server would tell a caller.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from server.bridge import Bridge
from server.config import Config
from server.host import ServerHost
from server.paths import Paths
from server.workers import bind
from tests.server.http.test_rest import STOCK_TOOL
from tests.server.test_cli import SLOW_SQL, Served, post, run_cli

LOOKUP = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def worker_pids(parent: int) -> list[int]:
    """The supervisor's worker processes (its other child is multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    pids = []
    for pid in children:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except FileNotFoundError:
            continue
    return sorted(pids)


def connections_held(pids: list[int], port: int) -> Counter[int]:
    """How many established connections to `port` each process holds (its fds matched to /proc/net/tcp)."""
    owner: dict[int, int] = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue
            if link.startswith("socket:["):
                owner[int(link[8:-1])] = pid
    held: Counter[int] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], int(fields[9])
            if local_port == port and state == "01" and inode in owner:
                held[owner[inode]] += 1
    return held


class Workers(Served):
    """`serve --demo --workers 2` with the rest of its output kept for later checks."""

    def __init__(self, home: Path, *extra: str, config: str = "", tools: str = "") -> None:
        home.mkdir(parents=True, exist_ok=True)
        if config:
            (home / "config.toml").write_text(config)
        if tools:
            run_cli("check", "--home", str(home))  # lays down the default catalog to extend
            (home / "tools.toml").write_text((home / "tools.toml").read_text() + tools)
        super().__init__(home, "--workers", "2", *extra)
        self.home = home
        self.pids = worker_pids(self.proc.pid)

    def finish(self) -> tuple[int, str]:
        code = self.stop()
        assert self.proc.stdout is not None
        return code, "\n".join(self.lines) + "\n" + self.proc.stdout.read()

    def audit_until(self, where: str, count: int, timeout: float = 5) -> list[sqlite3.Row]:
        """The matching audit rows once there are `count` of them (each worker writes its own batches)."""
        deadline = time.monotonic() + timeout
        rows = self.audit(where)
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.audit(where)
        return rows

    def audit(self, where: str = "1") -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.home / "state.sqlite3")
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(f"SELECT * FROM audit WHERE {where} ORDER BY id").fetchall()
        finally:
            conn.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    server = Workers(tmp_path / "home")
    yield server
    server.stop()


def keep_alive_round(url: str, key: str, count: int) -> list[http.client.HTTPConnection]:
    """`count` connections, each answered once at the same time and left open (keep-alive)."""
    host, port = url.removeprefix("http://").split(":")
    conns = [http.client.HTTPConnection(host, int(port), timeout=20) for _ in range(count)]
    statuses: list[int] = []

    def ask(conn: http.client.HTTPConnection) -> None:
        conn.request("POST", "/query", json.dumps(LOOKUP),
                     {"Content-Type": "application/json", "x-api-key": key})
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)

    threads = [threading.Thread(target=ask, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * count
    return conns


def open_on_each(workers: Workers, pids: list[int], key: str) -> list[http.client.HTTPConnection]:
    """Rounds of 16 simultaneous keep-alive connections until every worker holds some; the open
    connections (empty, all closed: some worker never took one)."""
    opened: list[http.client.HTTPConnection] = []
    for _ in range(10):
        opened += keep_alive_round(workers.url, key, 16)
        held = connections_held(pids, workers.port)
        if set(held) == set(pids):
            assert sum(held.values()) == len(opened)
            return opened
    for conn in opened:
        conn.close()
    return []


def held_by_each(workers: Workers, pids: list[int], key: str) -> int:
    """How many connections it took until every worker held some (0: some worker never took one)."""
    opened = open_on_each(workers, pids, key)
    for conn in opened:
        conn.close()
    return len(opened)


def test_both_workers_accept_connections_and_listening_is_printed_once(workers: Workers) -> None:
    assert len(workers.pids) == 2
    opened = keep_alive_round(workers.url, workers.first_key(), 32)  # at once, as wrk or a pool opens them
    held = connections_held(workers.pids, workers.port)
    for conn in opened:
        conn.close()
    assert set(held) == set(workers.pids) and sum(held.values()) == 32
    assert min(held.values()) >= 4  # spread by the kernel, not left to whichever worker wakes first
    code, output = workers.finish()
    assert code == 0
    assert [line for line in output.splitlines() if line.startswith("listening on")] == [
        f"listening on http://127.0.0.1:{workers.port}"]
    assert len(workers.audit_until("route = '/query' AND status = 200", 32)) == 32


def test_a_keys_rate_limit_holds_across_workers(tmp_path: Path) -> None:
    server = Workers(tmp_path / "home", config="[rate_limit]\nrequests = 10\nwindow_seconds = 600\n")
    try:
        key = server.first_key()
        statuses = [post(server.url + "/query", LOOKUP, key)[0] for _ in range(40)]  # a connection each
        assert statuses.count(200) == 10 and statuses.count(429) == 30
        assert statuses[:10] == [200] * 10
    finally:
        assert server.stop() == 0


def test_a_busy_keys_limit_holds_exactly_while_workers_lease_tokens(tmp_path: Path) -> None:
    """640 per window: each worker takes tokens ahead (leases of 10), yet the server admits 640 exactly."""
    server = Workers(tmp_path / "home", config="[rate_limit]\nrequests = 640\nwindow_seconds = 36000\n")
    try:
        key = server.first_key()
        conns = open_on_each(server, server.pids, key)  # keep-alive connections held by both workers
        assert conns
        statuses = []
        for n in range(720 - len(conns)):
            conn = conns[n % len(conns)]
            conn.request("POST", "/query", json.dumps(LOOKUP),
                         {"Content-Type": "application/json", "x-api-key": key})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        for conn in conns:
            conn.close()
        assert len(conns) + statuses.count(200) == 640
        assert statuses.count(429) == 720 - 640 and statuses[-40:] == [429] * 40
    finally:
        assert server.stop() == 0


def test_failed_auth_throttling_holds_across_workers(tmp_path: Path) -> None:
    server = Workers(tmp_path / "home", config="[rate_limit]\nfailed_auth_per_minute = 3\n")
    try:
        key = server.first_key()
        guesses = [post(server.url + "/query", LOOKUP, f"vbk_guess{i}_xxxxxxxx")[0] for i in range(4)]
        assert guesses == [401, 401, 401, 401]  # the 4th failure, on whichever worker, starts the block
        later = [post(server.url + "/query", LOOKUP, f"vbk_more{i}_xxxxxxxx") for i in range(20)]
        assert {status for status, _ in later} == {429}
        assert {body["code"] for _, body in later} == {"auth_throttled"}
        assert post(server.url + "/query", LOOKUP, key)[0] == 200  # a correct key is never locked out
    finally:
        assert server.stop() == 0


def mcp_post(url: str, key: str, session_id: str, body: dict[str, Any]) -> int:
    """One JSON-RPC message on a connection of its own; the HTTP status."""
    request = http.client.HTTPConnection(url.removeprefix("http://"), timeout=20)
    try:
        request.request("POST", "/mcp", json.dumps(body), {
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "x-api-key": key, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"})
        response = request.getresponse()
        response.read()
        return response.status
    finally:
        request.close()


async def _sdk_session(url: str, key: str) -> tuple[str, list[int]]:
    """The official client in legacy mode, a new connection for every request; the session it used."""
    seen: set[str] = set()

    async def remember(response: httpx2.Response) -> None:
        if "mcp-session-id" in response.headers:
            seen.add(response.headers["mcp-session-id"])

    counts = []
    http = httpx2.AsyncClient(headers={"x-api-key": key}, event_hooks={"response": [remember]},
                              limits=httpx2.Limits(max_keepalive_connections=0))
    async with http, Client(streamable_http_client(url + "/mcp", http_client=http), mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        for _ in range(12):
            found = await client.call_tool("find_customer_by_phone", {"phone": "+15558594448"})
            assert found.is_error is False
            counts.append(found.structured_content["count"])
        assert "check_inventory" in {tool.name for tool in (await client.list_tools()).tools}
    assert len(seen) == 1
    return seen.pop(), counts


def test_the_official_mcp_client_keeps_its_session_across_workers(workers: Workers) -> None:
    key = workers.first_key()
    session_id, counts = asyncio.run(_sdk_session(workers.url, key))
    assert counts == [1] * 12
    ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    # The SDK ended its session with DELETE on leaving; no worker knows it any more.
    assert [mcp_post(workers.url, key, session_id, ping) for _ in range(8)] == [404] * 8
    deleted = workers.audit_until("route = '/mcp' AND method = 'DELETE'", 1)
    assert [r["status"] for r in deleted] == [204]


def test_a_session_deleted_on_one_connection_is_gone_on_every_other(workers: Workers) -> None:
    key = workers.first_key()
    created = run_cli("keys", "create", "--name", "other", "--home", str(workers.home))
    other = created.stdout.strip().splitlines()[-1]
    time.sleep(1.5)
    conn = http.client.HTTPConnection(workers.url.removeprefix("http://"), timeout=20)
    conn.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "x-api-key": key})
    response = conn.getresponse()
    response.read()
    session_id = response.getheader("Mcp-Session-Id")
    conn.close()
    assert response.status == 200 and session_id
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert [mcp_post(workers.url, key, session_id, ping) for _ in range(8)] == [200] * 8
    assert [mcp_post(workers.url, other, session_id, ping) for _ in range(4)] == [404] * 4  # not its session
    conn = http.client.HTTPConnection(workers.url.removeprefix("http://"), timeout=20)
    conn.request("DELETE", "/mcp", headers={"x-api-key": key, "Mcp-Session-Id": session_id,
                                            "MCP-Protocol-Version": "2025-11-25"})
    assert conn.getresponse().status == 204
    conn.close()
    assert [mcp_post(workers.url, key, session_id, ping) for _ in range(8)] == [404] * 8


def orders_placed(home: Path) -> tuple[int, int]:
    """(orders, units of SWT-NVY-M in stock), read from the demo database itself."""
    conn = sqlite3.connect(home / "demo.sqlite3")
    try:
        return (conn.execute("SELECT count(*) FROM orders").fetchone()[0],
                conn.execute("SELECT quantity FROM inventory WHERE product_id = 'SWT-NVY-M'").fetchone()[0])
    finally:
        conn.close()


def test_one_idempotency_key_sent_to_both_workers_at_once_places_one_order(workers: Workers) -> None:
    key = workers.first_key()
    conns = open_on_each(workers, workers.pids, key)
    assert conns, "one worker never took a connection"
    orders, stock = orders_placed(workers.home)
    order = json.dumps({"action": "create_order", "params": {
        "customer_id": 3, "items": [{"product_id": "SWT-NVY-M", "quantity": 1}]}})
    answers: list[tuple[int, Any]] = []
    start = threading.Barrier(len(conns))

    def send(conn: http.client.HTTPConnection) -> None:
        start.wait()
        conn.request("POST", "/action", order, {"Content-Type": "application/json", "x-api-key": key,
                                                "Idempotency-Key": "retry-after-timeout-1"})
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read())))

    threads = [threading.Thread(target=send, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for conn in conns:
        conn.close()
    assert [status for status, _ in answers] == [200] * len(conns)
    assert len({json.dumps(body["data"], sort_keys=True) for _, body in answers}) == 1
    assert orders_placed(workers.home) == (orders + 1, stock - 1)


def test_an_action_empties_the_cached_query_on_every_worker(tmp_path: Path) -> None:
    server = Workers(tmp_path / "home", tools=STOCK_TOOL)
    try:
        key = server.first_key()
        ask = {"name": "stock_count", "params": {"product_id": "SCF-RED"}}
        first = {json.dumps(post(server.url + "/query", ask, key)[1]["data"]) for _ in range(16)}
        assert len(first) == 1
        quantity = json.loads(first.pop())[0]["quantity"]
        conn = sqlite3.connect(server.home / "demo.sqlite3")
        with conn:
            conn.execute("UPDATE inventory SET quantity = quantity + 5 WHERE product_id = 'SCF-RED'")
        conn.close()
        cached = {post(server.url + "/query", ask, key)[1]["data"][0]["quantity"] for _ in range(16)}
        assert cached == {quantity}  # both workers answer from their caches
        status, _ = post(server.url + "/action", {"action": "create_customer", "params": {
            "name": "Cache Buster", "phone": "+15550007777"}}, key)
        assert status == 200
        after = {post(server.url + "/query", ask, key)[1]["data"][0]["quantity"] for _ in range(16)}
        assert after == {quantity + 5}
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_a_slow_request_finish_and_stops_every_worker(workers: Workers,
                                                                         stop_signal: int) -> None:
    created = run_cli("keys", "create", "--name", "slow sql", "--scopes", "query,action,sql", "--home",
                      str(workers.home))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]  # raw SQL is for a key made with the sql scope
    time.sleep(1.5)  # every worker reads new keys within a second
    result: dict[str, Any] = {}
    client = threading.Thread(target=lambda: result.update(answer=post(workers.url + "/query",
                                                                       {"query": SLOW_SQL}, key)))
    client.start()
    time.sleep(0.5)
    workers.proc.send_signal(stop_signal)
    code = workers.proc.wait(timeout=30)
    client.join(timeout=30)
    assert code == 0
    assert result["answer"] == (200, {"success": True, "data": [{"n": 4000000}], "count": 1,
                                      "truncated": False})
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers.pids)  # no worker left behind


def test_a_key_created_while_it_runs_works_on_every_worker(workers: Workers) -> None:
    created = run_cli("keys", "create", "--name", "late", "--scopes", "query", "--home", str(workers.home))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    time.sleep(1.5)
    assert [post(workers.url + "/query", LOOKUP, key)[0] for _ in range(16)] == [200] * 16


def test_a_killed_worker_is_replaced(workers: Workers) -> None:
    key = workers.first_key()
    victim = workers.pids[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    pids = workers.pids
    while time.monotonic() < deadline:
        pids = worker_pids(workers.proc.pid)
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.2)
    assert len(pids) == 2 and victim not in pids and workers.pids[1] in pids
    assert [post(workers.url + "/query", LOOKUP, key)[0] for _ in range(16)] == [200] * 16
    assert held_by_each(workers, pids, key)  # the replacement accepts connections too
    errors = [json.loads(line) for line in (workers.home / "logs" / "error.log").read_text().splitlines()]
    assert [(e["message"], e["pid"], e["exitcode"]) for e in errors if e["logger"] == "server.workers"] == [
        ("worker exited unexpectedly; starting a replacement", victim, -signal.SIGKILL)]
    assert workers.stop() == 0


@pytest.mark.parametrize("count", ["0", "-2", "two"])
def test_a_worker_count_below_one_is_refused(tmp_path: Path, count: str) -> None:
    result = subprocess.run([sys.executable, "-m", "server", "--demo", "--home", str(tmp_path / "home"),
                             "--workers", count], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--workers" in result.stderr and ("1 or more" in result.stderr or "whole number" in result.stderr)
    assert not (tmp_path / "home").exists()  # refused before anything was set up


def test_under_load_every_request_is_audited_without_lock_errors(tmp_path: Path) -> None:
    workers = Workers(tmp_path / "home", config="[rate_limit]\nrequests = 100000\n")
    key = workers.first_key()
    statuses: list[int] = []

    def client() -> None:
        statuses.extend(post(workers.url + "/query", LOOKUP, key)[0] for _ in range(25))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert statuses == [200] * 400
        assert len(workers.audit_until("route = '/query' AND status = 200", 400)) == 400
    finally:
        assert workers.stop() == 0
    assert "locked" not in text(workers.home / "logs" / "error.log")
    assert "locked" not in workers.proc.stderr.read()  # type: ignore[union-attr]


def test_the_supervisor_alone_rotates_the_logs_and_workers_follow(tmp_path: Path) -> None:
    server = Workers(tmp_path / "home", config="[logging]\nmax_bytes = 1024\nbackups = 2\n")
    logs = server.home / "logs"
    try:
        key = server.first_key()
        for _ in range(12):  # about 3 KB of access lines
            assert post(server.url + "/query", LOOKUP, key)[0] == 200
        deadline = time.monotonic() + 10
        while not (logs / "combined.log.2").exists() and time.monotonic() < deadline:
            assert post(server.url + "/query", LOOKUP, key)[0] == 200
            time.sleep(0.3)
        assert (logs / "combined.log.2").exists()
        time.sleep(1.5)  # the next rotation check has run
        find = {"name": "find_customer_by_phone", "params": {"phone": "+15558594448"}}
        assert post(server.url + "/query", find, key)[0] == 200
        deadline = time.monotonic() + 5
        while "find_customer_by_phone" not in text(logs / "combined.log") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "find_customer_by_phone" in text(logs / "combined.log")  # reopened after the rename
    finally:
        assert server.stop() == 0
    assert not (logs / "combined.log.3").exists()  # backups = 2, as one process keeps them
    for rotated in ("combined.log.1", "combined.log.2"):
        assert "find_customer_by_phone" not in (logs / rotated).read_text()


def test_windows_refuses_more_than_one_worker_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main

    monkeypatch.setattr(sys, "platform", "win32")
    assert main(["serve", "--demo", "--workers", "2", "--home", str(tmp_path / "home")]) == 2
    assert "--workers above 1 needs Linux or macOS" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_workers_that_keep_dying_make_the_server_give_up(workers: Workers) -> None:
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while workers.proc.poll() is None and time.monotonic() < deadline:
        for pid in worker_pids(workers.proc.pid) if Path(f"/proc/{workers.proc.pid}").exists() else []:
            if pid not in killed:
                killed.add(pid)
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    assert workers.proc.wait(timeout=30) == 1
    assert "giving up" in workers.proc.stderr.read()  # type: ignore[union-attr]
    assert len(killed) >= 6  # six deaths within a minute: past the bound of five replacements
    assert all(not Path(f"/proc/{pid}").exists() for pid in killed)


def test_https_with_a_self_signed_certificate_on_every_worker(tmp_path: Path) -> None:
    import ssl
    import urllib.request

    server = Workers(tmp_path / "home", config="[server]\ntls_self_signed = true\n")
    try:
        assert server.lines[-1] == f"listening on https://127.0.0.1:{server.port}"
        assert any("SHA-256 fingerprint" in line for line in server.lines)
        context = ssl.create_default_context(cafile=str(server.home / "tls" / "cert.pem"))
        request = urllib.request.Request(f"https://127.0.0.1:{server.port}/query", method="POST",
                                         data=json.dumps(LOOKUP).encode(), headers={
                                             "Content-Type": "application/json", "x-api-key": server.first_key()})
        for _ in range(8):
            with urllib.request.urlopen(request, context=context, timeout=20) as response:
                assert response.status == 200
    finally:
        assert server.stop() == 0


def test_secrets_reach_workers_only_through_the_spawn_pipe(tmp_path: Path) -> None:
    secret = "headless-secret-for-docker-0123456789"
    home = tmp_path / "home"
    server = Served(home, "--workers", "2", env={"MCP_API_KEY": secret}, module=("-m", "server"))
    try:
        pids = worker_pids(server.proc.pid)
        assert len(pids) == 2
        for pid in pids:
            assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
            assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert [post(server.url + "/query", LOOKUP, secret)[0] for _ in range(8)] == [200] * 8
    finally:
        assert server.stop() == 0


def test_only_one_worker_probes_the_public_address(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    probes: list[str] = []

    class Tunnel(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            probes.append(self.path)
            body = json.dumps({"status": "healthy"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    tunnel = ThreadingHTTPServer(("127.0.0.1", 0), Tunnel)
    threading.Thread(target=tunnel.serve_forever, daemon=True).start()
    try:
        server = Workers(tmp_path / "home", config=f'[server]\npublic_url = "http://127.0.0.1:'
                                                   f'{tunnel.server_address[1]}"\n')
        try:
            time.sleep(3)  # both workers are up; the first probe runs at once, the next after 30 s
        finally:
            assert server.stop() == 0
    finally:
        tunnel.shutdown()
    assert probes == ["/health"]


def test_a_second_server_on_the_same_port_is_refused(workers: Workers, tmp_path: Path) -> None:
    second = subprocess.run([sys.executable, "-m", "server", "--demo", "--home", str(tmp_path / "other"),
                             "--port", str(workers.port), "--workers", "2"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "cannot start the server" in second.stderr
    assert "listening on" not in second.stdout


@pytest.fixture
def localhost_on_both_families(monkeypatch: pytest.MonkeyPatch) -> None:
    """`localhost` as macOS resolves it, to 127.0.0.1 and ::1 (this machine's hosts file has only the first)."""
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host == "localhost":
            return real("127.0.0.1", port, *args, **kwargs) + real("::1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


async def test_every_address_the_host_resolves_to_is_bound_for_every_worker(localhost_on_both_families,
                                                                            home: Paths) -> None:
    config = Config.model_validate({"server": {"host": "localhost", "port": 0}})
    socks = bind(config, 2)
    port = socks[0][0].getsockname()[1]
    try:
        assert len(socks) == 2
        for own in socks:  # as aiohttp's TCPSite binds `localhost`: both addresses, one port
            assert {sock.getsockname()[:2] for sock in own} == {("127.0.0.1", port), ("::1", port)}
        for sock in socks[1]:  # only the first worker's sockets are served here: the kernel must not
            sock.close()       # hand a connection to the second's
        host = ServerHost(Bridge(home, config, database_url="sqlite:///" + home.demo_db.as_posix().lstrip("/")),
                          socks[0])
        await host.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
                for url in (f"http://127.0.0.1:{port}/health", f"http://[::1]:{port}/health"):
                    async with client.get(url) as response:
                        assert response.status == 200
        finally:
            await host.stop()
    finally:
        for own in socks:
            for sock in own:
                sock.close()
