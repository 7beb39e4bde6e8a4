"""`voka-bridge tunnel …` and `serve` with a tunnel, as a person or a script runs them: real processes."""

from __future__ import annotations

import json
import os
import selectors
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from server.secretstore import SecretStore
from server.tunnel import secrets
from tests.server.test_cli import Served
from tests.server.tunnel.conftest import FAKE_CLOUDFLARED
from tests.server.tunnel.fake_cloudflared import DEFAULT_CLIENT

TOKEN = "2bogusAuthtoken_ForTheTestOnly1234567"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="the cloudflared stand-in on PATH is a shell script")


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=90, env={**os.environ, **(env or {})})


def tunnel_section(home: Path) -> dict:
    path = home / "config.toml"
    return tomllib.loads(path.read_text()).get("tunnel", {}) if path.exists() else {}


def test_token_is_read_from_stdin_kept_in_the_keyring_and_never_shown(tmp_path):
    home = str(tmp_path / "home")
    try:
        done = cli("tunnel", "token", "ngrok", "--home", home, stdin=f"ngrok config add-authtoken {TOKEN}\n")
        assert done.returncode == 0, done.stderr
        assert TOKEN not in done.stdout + done.stderr
        assert "Stored the ngrok authtoken in the OS keyring" in done.stdout
        assert SecretStore().get(secrets.ACCOUNTS["ngrok"]) == TOKEN
        assert not any(TOKEN.encode() in p.read_bytes() for p in Path(home).rglob("*") if p.is_file())
        bad = cli("tunnel", "token", "cloudflare", "--home", home, stdin="not a token\n")
        assert bad.returncode == 2 and "not a Cloudflare tunnel token" in bad.stderr
        removed = cli("tunnel", "token", "ngrok", "--delete", "--home", home)
        assert removed.returncode == 0 and SecretStore().get(secrets.ACCOUNTS["ngrok"]) is None
    finally:
        secrets.delete("ngrok")


def test_start_status_stop_without_a_running_server(tmp_path):
    home = tmp_path / "home"
    started = cli("tunnel", "start", "--provider", "cloudflare-quick", "--home", str(home))
    assert started.returncode == 0, started.stderr
    assert "No server is running on this home: `voka-bridge serve` starts the tunnel" in started.stdout
    assert tunnel_section(home) == {"provider": "cloudflare-quick"}
    status = cli("tunnel", "status", "--home", str(home))
    assert "Cloudflare quick tunnel (cloudflare-quick in config.toml)" in status.stdout
    assert "no server is running on this home" in status.stdout
    named = cli("tunnel", "start", "--provider", "cloudflare-named", "--home", str(home))
    assert named.returncode == 1 and "needs its public host name" in named.stderr
    assert tunnel_section(home) == {"provider": "cloudflare-quick"}  # nothing written
    ngrok = cli("tunnel", "start", "--provider", "ngrok", "--domain", "https://shop.ngrok.app",
                "--home", str(home), env={"NGROK_AUTHTOKEN": ""})
    assert tunnel_section(home) == {"provider": "ngrok", "domain": "shop.ngrok.app"}
    if SecretStore().get(secrets.ACCOUNTS["ngrok"]) is None:
        assert "voka-bridge tunnel token ngrok" in ngrok.stdout
    stopped = cli("tunnel", "stop", "--home", str(home))
    assert stopped.returncode == 0 and tunnel_section(home) == {"domain": "shop.ngrok.app"}
    again = cli("tunnel", "start", "--home", str(home))  # the provider is required when none is configured
    assert again.returncode == 2 and "--provider" in again.stderr


def test_serve_with_workers_refuses_a_managed_tunnel(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[tunnel]\nprovider = "cloudflare-quick"\n')
    result = cli("serve", "--demo", "--home", str(home), "--workers", "2")
    assert result.returncode == 2 and "the managed tunnel runs with one server process" in result.stderr


def _line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The next line the server prints, without hanging the test if none comes."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the server printed nothing more")
    return proc.stdout.readline().rstrip("\n")


def _audited_clients(home: Path, route: str) -> list[str]:
    """The client addresses in the server's audit rows for `route` (written within a second or so)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(f"file:{home / 'state.sqlite3'}?mode=ro", uri=True) as conn:
            rows = [r[0] for r in conn.execute("SELECT client FROM audit WHERE route = ? ORDER BY id", (route,))]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@posix_only
def test_serve_runs_the_tunnel_prints_its_url_and_the_tunnel_commands_steer_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[server]\ncheck_public_url = false\n\n[tunnel]\nprovider = "cloudflare-quick"\n')
    state, bin_dir = tmp_path / "fake-state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    script = bin_dir / "cloudflared"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLOUDFLARED}" "$@"\n')
    script.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_CLOUDFLARED_DIR": str(state)}
    served = Served(home, env=env)
    try:
        line = _line(served.proc)
        assert line.startswith("public URL https://") and line.endswith("-fake.trycloudflare.com")
        run = json.loads(sorted(state.glob("run-*.json"))[0].read_text())
        assert line == f"public URL https://{run['hostname']}"
        status = cli("tunnel", "status", "--home", str(home))
        assert "state       up (cloudflare-quick)" in status.stdout and run["hostname"] in status.stdout
        # a Voka-format call through the stand-in edge
        key = served.first_key()
        request = urllib.request.Request(f"http://127.0.0.1:{run['public_port']}/query", method="POST",
                                         data=b'{"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}',
                                         headers={"Content-Type": "application/json", "x-api-key": key})
        with urllib.request.urlopen(request, timeout=20) as response:
            assert json.loads(response.read())["data"][0]["product_id"] == "JKT-BLU-M"
        assert _audited_clients(home, "/query") == [DEFAULT_CLIENT]

        stopped = cli("tunnel", "stop", "--home", str(home))
        assert stopped.returncode == 0 and "The running server stopped its tunnel." in stopped.stdout
        deadline = time.monotonic() + 10
        while _alive(run["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(run["pid"])

        started = cli("tunnel", "start", "--provider", "cloudflare-quick", "--home", str(home))
        assert started.returncode == 0, started.stderr
        second = json.loads(sorted(state.glob("run-*.json"))[-1].read_text())
        assert f"public URL https://{second['hostname']}" in started.stdout
        assert "The address changed since last time: update it in Voka AI." in started.stdout
        assert _line(served.proc) == f"public URL https://{second['hostname']}"  # serve says so too
    finally:
        code = served.stop()
    assert code == 0
    assert not _alive(second["pid"])
    status = cli("tunnel", "status", "--home", str(home))
    assert "no server is running on this home" in status.stdout
