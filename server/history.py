"""Request history for the app: pages of the audit log (AuditLog.recent) and CSV export.

Blocking (sqlite3, files): run on a worker thread. Reads use their own short connection, so history
pages in whether or not the server is running.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable
from pathlib import Path

from server.audit import AuditLog
from server.events import RequestFinished
from server.paths import Paths
from server.state import connect_state

CSV_COLUMNS = ("ts", "key_name", "client", "method", "route", "protocol", "tool", "status", "duration_ms",
               "rows", "error_code")
_FIELDS = {f.name for f in dataclasses.fields(RequestFinished)}


def history_page(paths: Paths, limit: int = 200, before_id: int | None = None
                 ) -> list[tuple[int, RequestFinished]]:
    """Up to `limit` audit records older than `before_id` (newest first), as (audit id, event)."""
    conn = connect_state(paths.state_db)
    try:
        rows = AuditLog(conn, None).recent(limit, before_id)  # type: ignore[arg-type]  # reads only
    finally:
        conn.close()
    page = []
    for row in rows:
        values = {k: v for k, v in row.items() if k in _FIELDS}
        page.append((int(row["id"]), RequestFinished(**values)))
    return page


def export_csv(events: Iterable[RequestFinished], path: Path) -> int:
    """Write the given requests (never their bodies) to a CSV file; returns how many rows."""
    count = 0
    temp = path.with_name(path.name + ".part")
    with temp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for event in events:
            writer.writerow(["" if getattr(event, c) is None else getattr(event, c) for c in CSV_COLUMNS])
            count += 1
    temp.replace(path)
    return count
