"""No secret ever lands on disk: drive a whole session through the real command line and server processes
(keys, a PostgreSQL password, MCP_API_KEY, rotation, revocation, bad calls that carry secrets in every
place a caller could put them), then read every byte of every file under the home and search for them."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.postgres_support import PgServer, pg_db, pg_server  # noqa: F401  (fixtures)
from tests.security.conftest import run_cli


class ServeProcess:
    """`voka-bridge serve` as the owner would run it, until it prints its listening line."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--home", str(home), "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
        assert self.proc.stdout is not None
        self.stdout: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.stdout.append(line)
            if line.startswith("listening on "):
                return
        self.stop()
        raise AssertionError(f"server did not start: {self.stdout} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def call(self, path: str, body: Any, headers: dict[str, str], *, raw: bytes | None = None
             ) -> tuple[int, dict[str, str], bytes]:
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method="POST",
                                         headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, "".join(self.stdout) + out, err


def created_key(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def needles(secret: str) -> set[bytes]:
    """The secret, and for a vbk_ key its random part alone, in the encodings a file could hold."""
    parts = {secret}
    if secret.startswith("vbk_"):
        parts.add(secret.split("_", 2)[2])
    found: set[bytes] = set()
    for part in parts:
        found |= {part.encode(), part.encode("utf-16-le"), json.dumps(part).encode()}
    return found


def test_a_full_session_leaves_no_secret_in_any_file(tmp_path: Path, pg_server: PgServer,  # noqa: F811
                                                     pg_db: str) -> None:  # noqa: F811
    home = tmp_path / "home"
    db_password = pg_server.password
    env_key = "shop-" + secrets.token_hex(16)
    env = {"DATABASE_URL": pg_server.url(pg_db), "MCP_API_KEY": env_key}
    voka = created_key(run_cli("keys", "create", "--name", "voka", "--scopes", "query,action,sql",
                               "--home", str(home)))
    spare = created_key(run_cli("keys", "create", "--name", "spare", "--scopes", "query", "--home", str(home)))
    served = ServeProcess(home, env)
    calls: list[tuple[int, bytes]] = []

    def call(path: str, body: Any, key: str | None = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> int:
        sent = {"x-api-key": key} if key else {}
        status, _, answer = served.call(path, body, {**sent, **(headers or {})}, raw=raw)
        calls.append((status, answer))
        return status

    try:
        assert call("/query", {"name": "find_customer_by_phone", "params": {"phone": "+15558594448"}}, voka) == 200
        assert call("/query", {"query": "SELECT count(*) AS n FROM customers"}, voka) == 200
        assert call("/action", {"action": "create_customer", "params": {"name": "Leak Test",
                                                                        "phone": "+15550007777"}}, voka) == 200
        assert call("/", {"method": "query", "params": {"name": "check_inventory",
                                                        "params": {"product_id": "SCF-RED"}}}, env_key) == 200
        assert call("/query", {"query": "SELECT 1"}, headers={"Authorization": f"Bearer {env_key}"}) == 200
        # Secrets where they do not belong: in parameters, in SQL, as the wrong kind of credential.
        for secret in (voka, spare, env_key, db_password):
            assert call("/query", {"name": "find_customer_by_phone", "params": {"phone": secret}}, voka) == 400
            assert call("/query", {"query": f"SELECT '{secret}' AS s FROM nowhere_{secrets.token_hex(2)}"},
                        voka) == 400
            assert call("/query", {"name": "check_inventory", "params": {"product_id": "x"}}, secret + "x") == 401
            assert call("/query", {}, headers={"Authorization": f"Basic {secret}"}) == 401
            assert call("/query", {}, raw=b'{"password": "' + secret.encode() + b'", "broken": ') == 401
            assert call("/query", {"name": secret}, voka) == 404  # a secret pasted as the tool name
            assert call("/action", {"action": secret, "params": {"password": secret}}, voka) == 404
            assert call(f"/{secret}", {"query": "SELECT 1"}, voka) == 404  # ... or into the address
        assert call("/query", {"name": "check_inventory", "params": {"product_id": "x"}}, voka[:-2]) == 401
        assert call("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": voka, "version": env_key}}},
            voka, headers={"Accept": "application/json, text/event-stream"}) == 200

        rotated = run_cli("keys", "rotate", "voka", "--grace", "1", "--home", str(home), env=env)
        new_voka = created_key(rotated)
        assert run_cli("keys", "revoke", "spare", "--home", str(home), env=env).returncode == 0
        time.sleep(1.5)  # the running server re-reads key records within a second
        assert call("/query", {"query": "SELECT 1"}, new_voka) == 200
        assert call("/query", {"query": "SELECT 1"}, voka) == 200  # grace period
        assert call("/query", {"query": "SELECT 1"}, spare) == 401
        listing = run_cli("keys", "list", "--home", str(home), env=env)
        checked = run_cli("check", "--home", str(home), env=env)
        assert checked.returncode == 0, checked.stderr
    finally:
        code, out, err = served.stop()
    assert code == 0, err

    secrets_used = {"voka key": voka, "rotated voka key": new_voka, "spare key": spare,
                    "MCP_API_KEY": env_key, "database password": db_password}
    files = [p for p in home.rglob("*") if p.is_file()]
    names = {p.relative_to(home).as_posix() for p in files}
    assert {"state.sqlite3", "logs/combined.log", "tools.toml"} <= names, names  # the scan saw the real files
    assert (home / "logs" / "combined.log").stat().st_size > 0
    for path in files:
        data = path.read_bytes()
        for what, secret in secrets_used.items():
            for needle in needles(secret):
                assert needle not in data, f"{what} found in {path.relative_to(home)}"
    # The console of the server and of the owner's commands (other than the one that shows a new key).
    for what, secret in secrets_used.items():
        for text in (out, err, listing.stdout, listing.stderr, checked.stdout, checked.stderr,
                     rotated.stderr):
            assert secret not in text, f"{what} printed on a console"
    # No answer echoes a secret either, not even back to the caller who pasted it somewhere wrong.
    for _, answer in calls:
        for what, secret in secrets_used.items():
            assert secret.encode() not in answer, f"{what} echoed in {answer[:200]!r}"
        assert b"Traceback" not in answer
