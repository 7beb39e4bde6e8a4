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
