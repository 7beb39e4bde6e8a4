"""state.sqlite3: created and migrated once, even when several threads open a new file together."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from server.state import SCHEMA_VERSION, connect_state


def test_concurrent_first_opens_create_the_schema_once(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        start.wait()
        try:
            connect_state(path).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    conn = connect_state(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"keys", "audit", "idempotency", "mcp_sessions"} <= tables


def test_the_state_database_is_readable_by_its_owner_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import stat

    from server.state import connect_state

    path = tmp_path / "state.sqlite3"
    connect_state(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)  # a file left by an older version
    conn = connect_state(path)
    conn.execute("CREATE TABLE IF NOT EXISTS probe (x)")
    conn.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for extra in tmp_path.glob("state.sqlite3-*"):
        assert stat.S_IMODE(os.stat(extra).st_mode) & 0o077 == 0, extra


def test_opening_the_state_again_keeps_the_locks_of_connections_already_open(tmp_path: Path) -> None:
    """SQLite's locks are POSIX locks, which a process loses on a file when it closes any descriptor of
    it. Opening the state again (the app does, for each key change) must not drop the running server's:
    without them, `voka-bridge keys create` from a terminal took itself for the last user of the file on
    closing, deleted the write-ahead log under the server, whose later writes went to the deleted file
    (lost when it closed) and whose reads could fail with "disk I/O error"."""
    home = tmp_path / "home"
    home.mkdir()
    path = home / "state.sqlite3"
    server = connect_state(path)  # the running server's connection
    server.execute("CREATE TABLE IF NOT EXISTS probe (x)")
    server.execute("INSERT INTO probe VALUES (1)")
    connect_state(path).close()  # the app reads the keys
    made = subprocess.run([sys.executable, "-m", "server.cli", "keys", "create", "--name", "from a terminal",
                           "--home", str(home)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    assert made.returncode == 0, made.stderr
    names = [row[0] for row in server.execute("SELECT name FROM keys")]  # disk I/O error before
    assert "from a terminal" in names
    assert server.execute("SELECT x FROM probe").fetchall() == [(1,)]
    assert path.with_name("state.sqlite3-wal").exists()
    server.execute("INSERT INTO probe VALUES (2)")  # went to a deleted log before, lost on closing
    server.close()
    again = connect_state(path)
    assert again.execute("SELECT x FROM probe ORDER BY x").fetchall() == [(1,), (2,)]
    again.close()
