"""`voka-bridge` as a person or a script runs it: real processes, real ports, real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}
SLOW_SQL = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 4000000) "
            "SELECT count(*) AS n FROM c")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def post(url: str, body: dict, key: str, timeout: float = 20) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Served:
    def __init__(self, home: Path, *extra: str, env: dict[str, str] | None = None,
                 module: tuple[str, ...] = ("-m", "server.cli", "serve")) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, *module, "--demo", "--home", str(home), "--port", str(self.port), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith("listening on "):
                return
        raise AssertionError(f"server did not start: {self.lines} {self.proc.stderr.read()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def first_key(self) -> str:
        return next(line.strip() for line in self.lines if line.strip().startswith("vbk_"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "home")
    yield server
    server.stop()


def test_serve_demo_on_a_fresh_home_prints_a_key_and_a_working_curl(served: Served, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert served.lines[-1] == f"listening on http://127.0.0.1:{served.port}"
    assert {p.name for p in home.iterdir()} >= {"demo.sqlite3", "tools.toml", "state.sqlite3", "logs"}
    key = served.first_key()
    assert any("'Voka AI'" in line and "not raw SQL" in line for line in served.lines)
    curl = next(line.strip() for line in served.lines if "curl -X POST" in line)
    assert key in curl and "SELECT" not in curl
    pasted = subprocess.run(curl + " -s", shell=True, capture_output=True, text=True, timeout=30)
    answer = json.loads(pasted.stdout)
    assert answer["success"] is True and answer["data"][0]["product_id"] == "JKT-BLU-M"
    status, body = post(served.url + "/query", {"query": "SELECT * FROM customers LIMIT 5"}, key)
    assert (status, body["code"]) == (403, "forbidden")  # tools only: raw SQL needs a key made with sql


def test_serve_on_own_database_prints_a_call_the_first_key_may_make(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shop = tmp_path / "shop.sqlite3"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE staff (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO staff (name) VALUES ('Ada')")
    (home / "config.toml").write_text(f"[database]\nurl = 'sqlite:///{shop.as_posix().lstrip('/')}'\n")
    (home / "tools.toml").write_text(
        "[tools.staff_member]\nkind = 'query'\ndescription = 'One member of staff by number'\n"
        "sql = 'SELECT name FROM staff WHERE id = :id'\n[tools.staff_member.params.id]\ntype = 'integer'\n"
        "min = 1\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--home", str(home), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        assert proc.stdout is not None
        while not lines or not lines[-1].startswith("listening on "):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line.strip())
        curl = next(line for line in lines if line.startswith("curl -X POST"))
        pasted = subprocess.run(curl + " -s", shell=True, capture_output=True, text=True, timeout=30)
        assert json.loads(pasted.stdout)["data"] == [{"name": "Ada"}]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_sigterm_finishes_in_flight_requests_then_exits_zero(served: Served, tmp_path: Path) -> None:
    import threading

    made = run_cli("keys", "create", "--name", "slow sql", "--scopes", "query,action,sql", "--home",
                   str(tmp_path / "home"))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]  # raw SQL is for a key made with the sql scope
    deadline = time.monotonic() + 10  # the running server reads new keys within a second
    while post(served.url + "/query", {"query": "SELECT 1"}, key)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(
        answer=post(served.url + "/query", {"query": SLOW_SQL}, key)))
    worker.start()
    time.sleep(0.3)
    assert served.stop() == 0
    worker.join(timeout=30)
    assert result["answer"] == (200, {"success": True, "data": [{"n": 4000000}], "count": 1,
                                      "truncated": False})
    with pytest.raises(urllib.error.URLError):
        post(served.url + "/query", {"query": "SELECT 1"}, key, timeout=2)


def test_python_dash_m_server_and_mcp_api_key(tmp_path: Path) -> None:
    secret = "headless-secret-for-docker-0123456789"
    server = Served(tmp_path / "home", env={"MCP_API_KEY": secret}, module=("-m", "server"))
    try:
        assert not any(line.startswith("vbk_") or "vbk_" in line for line in server.lines)
        status, body = post(server.url + "/query", {"query": "SELECT count(*) AS n FROM inventory"}, secret)
        assert status == 200 and body["data"][0]["n"] == 40
    finally:
        assert server.stop() == 0
    logs = b"".join(p.read_bytes() for p in (tmp_path / "home" / "logs").glob("*.log"))
    access = [json.loads(line) for line in logs.splitlines() if b'"server.access"' in line]
    assert any(line["status"] == 200 and line["key"] == "MCP_API_KEY" for line in access)
    assert secret.encode() not in logs


def test_keys_lifecycle_through_the_cli_reaches_a_running_server(served: Served, tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    created = run_cli("keys", "create", "--name", "phone-bot", "--scopes", "query", "--home", home)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("vbk_")
    time.sleep(1.5)  # the server notices new records within a second
    lookup = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}
    assert post(served.url + "/query", lookup, key)[0] == 200
    listing = run_cli("keys", "list", "--home", home)
    assert "phone-bot" in listing.stdout and key not in listing.stdout
    rotated = run_cli("keys", "rotate", "phone-bot", "--grace", "1", "--home", home)
    new_key = rotated.stdout.strip().splitlines()[-1]
    assert rotated.returncode == 0 and new_key.startswith("vbk_") and new_key != key
    time.sleep(1.5)
    assert post(served.url + "/query", lookup, key)[0] == 200
    assert post(served.url + "/query", lookup, new_key)[0] == 200
    revoked = run_cli("keys", "revoke", "phone-bot", "--home", home)
    assert revoked.returncode == 0 and "Revoked" in revoked.stdout
    time.sleep(1.5)
    assert post(served.url + "/query", lookup, new_key)[0] == 401
    assert post(served.url + "/query", lookup, key)[0] == 401
    listing = run_cli("keys", "list", "--home", home)
    assert "revoked" in listing.stdout


def test_keys_rename_through_the_cli_shows_in_the_running_servers_audit(served: Served, tmp_path: Path
                                                                          ) -> None:
    home = tmp_path / "home"
    created = run_cli("keys", "create", "--name", "phone-bot", "--scopes", "query", "--home", str(home))
    key = created.stdout.strip().splitlines()[-1]
    renamed = run_cli("keys", "rename", "phone-bot", "counter bot", "--home", str(home))
    assert renamed.returncode == 0, renamed.stderr
    assert "'phone-bot' to 'counter bot'" in renamed.stdout and key not in renamed.stdout
    listing = run_cli("keys", "list", "--home", str(home))
    assert "counter bot" in listing.stdout and "phone-bot" not in listing.stdout
    time.sleep(1.5)  # the server notices changed records within a second
    lookup = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}
    assert post(served.url + "/query", lookup, key)[0] == 200  # same secret
    names: list[str] = []
    deadline = time.monotonic() + 5
    while "counter bot" not in names and time.monotonic() < deadline:
        time.sleep(0.3)
        conn = sqlite3.connect(home / "state.sqlite3")
        names = [row[0] for row in conn.execute("SELECT key_name FROM audit WHERE status = 200")]
        conn.close()
    assert names == ["counter bot"]
    run_cli("keys", "create", "--name", "other", "--home", str(home))
    taken = run_cli("keys", "rename", "other", "counter bot", "--home", str(home))
    assert taken.returncode == 1 and "already exists" in taken.stderr
    bad = run_cli("keys", "rename", "other", "bad;name", "--home", str(home))
    assert bad.returncode == 1 and "key name" in bad.stderr


def test_keys_cli_refuses_bad_requests_clearly(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    bad = run_cli("keys", "create", "--name", "x", "--scopes", "query,root", "--home", home)
    assert bad.returncode == 1 and "unknown scope" in bad.stderr
    missing = run_cli("keys", "revoke", "nobody", "--home", home)
    assert missing.returncode == 1 and "no key" in missing.stderr


def test_check_passes_on_the_demo_and_names_a_broken_catalog(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok = run_cli("check", "--home", str(home))
    assert ok.returncode == 0, ok.stderr
    assert "catalog: ok, 5 tool(s)" in ok.stdout and "reachable" in ok.stdout
    (home / "tools.toml").write_text("[tools.bad]\nkind = 'query'\ndescription = 'x'\nsql = 'SELECT :nope'\n")
    broken = run_cli("check", "--home", str(home))
    assert broken.returncode == 1
    assert str(home / "tools.toml") in broken.stderr and "tools.bad" in broken.stderr and ":nope" in broken.stderr
    (home / "config.toml").write_text("[database]\nurl = 'sqlite:///nonexistent/shop.sqlite3'\n")
    (home / "tools.toml").unlink()
    nodb = run_cli("check", "--home", str(home))
    assert nodb.returncode == 1 and "does not exist" in nodb.stderr


def test_serve_refuses_plain_http_off_loopback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--demo", "--home",
                             str(tmp_path / "home"), "--host", "0.0.0.0", "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert result.returncode == 1
    assert "tls_cert" in result.stderr and "127.0.0.1" in result.stderr


def test_the_server_package_never_loads_qt_or_the_app(tmp_path: Path) -> None:
    probe = ("import sys, pkgutil, importlib, server\n"
             "for info in pkgutil.walk_packages(server.__path__, 'server.'):\n"
             "    importlib.import_module(info.name)\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'PySide6')))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    gui = run_cli("gui", "--home", str(tmp_path / "home"))
    assert gui.returncode == 1 and "voka-bridge serve" in gui.stderr


NO_KEYRING = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
"""The environment of a headless Linux box with no Secret Service: keyring finds no usable backend."""


def _nowhere_in_clear(home: Path, *secrets: str) -> None:
    """No file under the home (state.sqlite3 and its WAL, config, logs) holds a key in clear."""
    for path in (p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, path


def test_keys_made_without_a_keyring_work_across_restarts_of_serve(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = run_cli("keys", "create", "--name", "voka", "--home", str(home), env=NO_KEYRING)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("vbk_") and "no usable OS keyring" in created.stdout
    assert created.stdout.count(key) == 1 and key not in created.stderr
    lookup = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}
    first = Served(home, env=NO_KEYRING)
    try:
        assert not any("vbk_" in line for line in first.lines)  # a key exists: no first key
        assert post(first.url + "/query", lookup, key)[0] == 200
    finally:
        assert first.stop() == 0
    rotated = run_cli("keys", "rotate", "voka", "--grace", "0", "--home", str(home), env=NO_KEYRING)
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip().splitlines()[-1]
    assert new_key.startswith("vbk_") and new_key != key and "no usable OS keyring" in rotated.stdout
    again = Served(home, env=NO_KEYRING)
    try:
        assert not any("vbk_" in line for line in again.lines)
        assert post(again.url + "/query", lookup, new_key)[0] == 200
        assert post(again.url + "/query", lookup, key)[0] == 401
    finally:
        assert again.stop() == 0
    listing = run_cli("keys", "list", "--home", str(home), env=NO_KEYRING)
    assert listing.returncode == 0 and "voka" in listing.stdout and "active" in listing.stdout
    _nowhere_in_clear(home, key, new_key)


def test_first_start_without_a_keyring_makes_a_key_that_survives_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = Served(home, env=NO_KEYRING)
    try:
        key = first.first_key()
        assert any("only time it is shown" in line for line in first.lines)
        assert post(first.url + "/query", INVENTORY, key)[0] == 200
    finally:
        assert first.stop() == 0
    again = Served(home, env=NO_KEYRING)
    try:
        assert not any("vbk_" in line for line in again.lines)  # no new key at the second start
        assert post(again.url + "/query", INVENTORY, key)[0] == 200
    finally:
        assert again.stop() == 0
    for served in (first, again):
        assert served.proc.stderr is not None and key not in served.proc.stderr.read()
    _nowhere_in_clear(home, key)


def test_keys_create_with_a_keyring_also_keeps_the_secret_there(tmp_path: Path) -> None:
    import keyring

    from server.keys import key_id_of, keyring_account

    created = run_cli("keys", "create", "--name", "voka", "--home", str(tmp_path / "home"))
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert "kept in your OS keyring" in created.stdout
    assert keyring.get_password("voka-bridge", keyring_account(key_id_of(key) or "")) == key


@pytest.mark.parametrize("days", ["0", "-3", "nan", "inf", "soon"])
def test_expires_days_must_be_a_positive_number(tmp_path: Path, days: str) -> None:
    result = run_cli("keys", "create", "--name", "voka", "--expires-days", days, "--home", str(tmp_path / "h"))
    assert result.returncode == 2, result.stdout
    assert "--expires-days" in result.stderr and "Traceback" not in result.stderr
    listed = run_cli("keys", "list", "--home", str(tmp_path / "h"))
    assert "No keys yet" in listed.stdout  # nothing was made


def test_a_short_mcp_api_key_is_refused_and_a_middling_one_warned(tmp_path: Path) -> None:
    refused = run_cli("serve", "--demo", "--home", str(tmp_path / "a"), "--port", str(free_port()),
                      env={"MCP_API_KEY": "mysecretkey123"})
    assert refused.returncode != 0
    assert "MCP_API_KEY is only 14 characters" in refused.stderr and "Traceback" not in refused.stderr
    assert "mysecretkey123" not in refused.stdout + refused.stderr
    middling = "k" * 20
    server = Served(tmp_path / "b", env={"MCP_API_KEY": middling})
    try:
        status, _ = post(server.url + "/query", {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}},
                         middling)
        assert status == 200
    finally:
        server.stop()
    assert server.proc.stderr is not None
    assert "warning: MCP_API_KEY is only 20 characters" in server.proc.stderr.read()


@pytest.mark.parametrize("port", ["80000", "-1", "http"])
def test_a_bad_port_is_one_clear_line(tmp_path: Path, port: str) -> None:
    result = run_cli("serve", "--demo", "--home", str(tmp_path / "h"), "--port", port)
    assert result.returncode == 2 and "--port" in result.stderr and "Traceback" not in result.stderr


def test_a_busy_port_says_what_to_do(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--demo", "--home", str(tmp_path / "h"), "--port", str(port))
    assert result.returncode == 1
    assert "already in use" in result.stderr and "--port" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_config_file_given_with_config_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    for command in (("serve", "--demo"), ("check",)):
        result = run_cli(*command, "--home", str(tmp_path / "h"), "--config", str(missing))
        assert result.returncode == 1, command
        assert "no such file" in result.stderr and str(missing) in result.stderr
        assert "listening" not in result.stdout


def test_check_says_when_there_is_no_config_toml(tmp_path: Path) -> None:
    result = run_cli("check", "--home", str(tmp_path / "h"))
    assert result.returncode == 0, result.stderr
    assert "config: none yet" in result.stdout and "config: ok" not in result.stdout
