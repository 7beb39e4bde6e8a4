"""What `serve` says on its console when the database named in config.toml is not there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port


def test_serve_on_a_missing_sqlite_file_says_so_on_the_console(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    missing = tmp_path / "shop" / "till.sqlite3"
    (home / "config.toml").write_text(f'[database]\nurl = "sqlite:///{missing.as_posix().lstrip("/")}"\n')
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--home", str(home), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MCP_API_KEY": "k" * 40})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not proc.stdout.readline().startswith("listening on"):
            pass
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # The owner reads the cause at start (not only in error.log), and that it keeps trying.
    line = next(line for line in err.splitlines() if "database unavailable at start" in line)
    assert f"The SQLite file /{missing.as_posix().lstrip('/')} does not exist" in line, err
    assert "retrying" in line
    assert not missing.exists()  # looking for it did not create an empty database
