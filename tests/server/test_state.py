"""state.sqlite3: created and migrated once, even when several threads open a new file together."""

from __future__ import annotations

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
