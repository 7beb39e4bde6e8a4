"""`voka-bridge gui --home DIR --port P` as a real process: serves on P, honours MCP_API_KEY, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.app.conftest import call
from tests.conftest import free_port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} within {seconds} s")


def test_gui_command_serves_on_the_port_and_stops_cleanly(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MCP_API_KEY": "gui-process-key-0042"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "gui", "--home", str(tmp_path / "h"),
                             "--port", str(port)], env=env, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        wait_for_port(port, proc)
        status, body = call(f"http://127.0.0.1:{port}", "/query",
                            {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}},
                            key="gui-process-key-0042")
        assert status == 200 and body["data"][0]["quantity"] >= 0
        status, _ = call(f"http://127.0.0.1:{port}", "/query", {"query": "SELECT 1"}, key="wrong")
        assert status == 401
        second = subprocess.run([sys.executable, "-m", "app", "gui", "--home", str(tmp_path / "h"),
                                 "--port", str(free_port())], env=env, capture_output=True, text=True,
                                timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert second.returncode == 0 and "already running" in second.stderr  # one instance per home
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
