"""Audit rows: masked before they are stored, each value in its own column."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from server.audit import AuditLog
from server.events import RequestFinished
from server.state import connect_state


def entry(**changes: object) -> RequestFinished:
    fields: dict = dict(ts="2026-11-25T14:00:00.000+00:00", key_id="k1", key_name="shop", client="127.0.0.1",
                        method="POST", route="/mcp", protocol="mcp", tool="find_customer_by_phone",
                        status=200, duration_ms=1.5, rows=1, error_code=None, detail=None)
    fields.update(changes)
    return RequestFinished(**fields)


async def saved(tmp_path: Path, *entries: RequestFinished) -> list[dict]:
    conn = connect_state(tmp_path / "state.sqlite3")
    with ThreadPoolExecutor(max_workers=1) as thread:
        audit = AuditLog(conn, thread)
        for item in entries:
            audit.record(item)
        await audit.flush()
        rows = audit.recent(10)
    conn.close()
    return list(reversed(rows))


async def test_secrets_in_any_text_column_are_masked(tmp_path: Path) -> None:
    key = "vbk_abc123_" + "s" * 32
    [row] = await saved(tmp_path, entry(route=f"/query?k={key}", tool="password=hunter2",
                                        detail=f"bearer {key}", key_name="shop"))
    assert key not in str(row) and "hunter2" not in str(row)
    assert row["route"] == "/query?k=vbk_***" and row["tool"] == "password=***"
    assert row["key_name"] == "shop" and row["status"] == 200


async def test_a_caller_cannot_shift_values_into_other_columns(tmp_path: Path) -> None:
    """A tool name is the caller's text: the separator used to mask a row in one pass must not split it."""
    first, second = await saved(tmp_path, entry(tool="a\x00b password=x", error_code="unknown_tool"),
                                entry(tool="x", detail="password=1\x00", error_code="e2"))
    assert first["tool"] == "a\x00b password=***"
    assert first["error_code"] == "unknown_tool" and first["client"] == "127.0.0.1"
    assert (second["tool"], second["detail"], second["error_code"]) == ("x", "password=***", "e2")


async def test_a_mask_that_would_run_across_columns_stays_in_its_own(tmp_path: Path) -> None:
    [row] = await saved(tmp_path, entry(route="/x?password=", tool="secretive", error_code="bad_thing"))
    assert (row["route"], row["tool"], row["error_code"]) == ("/x?password=", "secretive", "bad_thing")


async def test_stopping_while_a_batch_waits_for_the_state_thread_loses_nothing(tmp_path: Path) -> None:
    """Under load the state thread is busy with other work when the server stops; the batch the writer
    has queued must still be written, not dropped with a cancelled write."""
    conn = connect_state(tmp_path / "state.sqlite3")
    with ThreadPoolExecutor(max_workers=1) as thread:
        audit = AuditLog(conn, thread, interval=0.01)
        audit.start()
        busy = asyncio.get_running_loop().run_in_executor(thread, time.sleep, 0.4)  # other state work
        for i in range(50):
            audit.record(entry(tool=f"t{i}"))
        await asyncio.sleep(0.1)  # the writer's flush is now queued behind the busy thread
        await audit.stop()
        await busy
        rows = audit.recent(100)
    conn.close()
    assert sorted(row["tool"] for row in rows) == sorted(f"t{i}" for i in range(50))


async def test_the_log_line_is_made_from_the_masked_row(tmp_path: Path) -> None:
    """combined.log gets each request's line from the row as saved: masked once, not redacted again."""
    from server.config import LogSettings
    from server.logs import setup_logging, stop_logging

    setup_logging(tmp_path / "logs", LogSettings())
    try:
        key = "vbk_abc123_" + "t" * 32
        clean, dirty = await saved(tmp_path, entry(tool="find_customer_by_phone", key_name="MCP_API_KEY"),
                                   entry(route=f"/query?k={key}", detail="Password: hunter2", status=503))
    finally:
        stop_logging()
    assert clean["tool"] == "find_customer_by_phone" and clean["key_name"] == "MCP_API_KEY"
    assert dirty["route"] == "/query?k=vbk_***" and dirty["detail"] == "Password: ***"
    combined = (tmp_path / "logs" / "combined.log").read_text()
    errors = (tmp_path / "logs" / "error.log").read_text()
    assert key not in combined + errors and "hunter2" not in combined + errors
    lines = [json.loads(line) for line in combined.splitlines() if '"message":"request"' in line]
    assert [(x["route"], x["key"], x["status"]) for x in lines] == [
        ("/mcp", "MCP_API_KEY", 200), ("/query?k=vbk_***", "shop", 503)]
    assert lines[1]["reason"] == "Password: ***" and lines[0]["time"] == "2026-11-25T14:00:00.000Z"
    assert list(lines[0]) == ["time", "level", "logger", "message", "method", "route", "status", "client", "key",
                              "tool", "ms", "rows", "code", "reason"]
    assert (lines[0]["level"], lines[1]["level"], lines[0]["logger"]) == ("info", "error", "server.access")
    assert '"route":"/query?k=vbk_***"' in errors


async def test_a_batch_is_saved_exactly_as_recorded(tmp_path: Path) -> None:
    """The batch goes to SQLite as one JSON array: every value must come back with its type and text."""
    odd = entry(route='/q?"quoted"\\back\tslash\n', tool="caf\u00e9 \U0001f600 \u2028", status=503,
                duration_ms=0.1 + 0.2, rows=None, error_code="x" * 300, key_id=None, key_name=None)
    plain = entry(rows=12345678901, duration_ms=7.0)
    first, second = await saved(tmp_path, odd, plain)
    assert first["route"] == '/q?"quoted"\\back\tslash\n' and first["tool"] == "caf\u00e9 \U0001f600 \u2028"
    assert first["duration_ms"] == 0.1 + 0.2 and isinstance(first["status"], int) and first["status"] == 503
    assert first["rows"] is None and first["key_id"] is None and first["error_code"] == "x" * 300
    assert second["rows"] == 12345678901 and isinstance(second["duration_ms"], float)
    assert second["duration_ms"] == 7.0


async def test_text_json_cannot_carry_is_saved_row_by_row(tmp_path: Path) -> None:
    """A lone surrogate has no UTF-8 form: neither JSON nor SQLite can take it as it is."""
    first, second = await saved(tmp_path, entry(route="/bad\udcff"), entry(route="/fine"))
    assert first["route"] == "/bad\\udcff" and second["route"] == "/fine"
