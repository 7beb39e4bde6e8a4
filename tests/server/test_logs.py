"""JSON-lines logs: one object per line, errors also in error.log, rotation, and secrets masked."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path

from server.config import LogSettings
from server.logs import redact, register_secret, setup_logging, stop_logging
from server.state import connect_state


def test_redact_masks_every_secret_shape() -> None:
    register_secret("plain-env-secret-42")
    text = ("key vbk_ab12cd34ef56_Zx9-_q url postgresql://shop:hunter2@db:5432/x password=swordfish "
            "x-api-key: abc123 Authorization: Bearer tok.en-1 env plain-env-secret-42")
    masked = redact(text)
    for secret in ("vbk_ab12cd34ef56_Zx9-_q", "hunter2", "swordfish", "abc123", "tok.en-1", "plain-env-secret-42"):
        assert secret not in masked
    assert "postgresql://shop:***@db:5432/x" in masked and "vbk_***" in masked



def test_redact_is_case_insensitive_in_ascii_and_in_any_other_text() -> None:
    """The patterns are first looked for in the lower-cased text; that shortcut must never miss a
    mixed-case secret, nor one in a line that also holds non-ASCII text (where lower() and the
    case-insensitive regex can disagree, so the regex decides alone)."""
    for text in ('{"PassWord": "swordfish", "API_KEY": "abc123"} POSTGRES://shop:hunter2@db/x BEARER tok.en-1',
                 'Ünïcode İstanbul ſ PassWord=swordfish Api-Key: abc123 POSTGRES://shop:hunter2@db/x '
                 'BEARER tok.en-1'):
        masked = redact(text)
        for secret in ("swordfish", "abc123", "hunter2", "tok.en-1"):
            assert secret not in masked, (secret, masked)
    plain = '{"route":"/mcp","key":"MCP_API_KEY","tool":"find_customer_by_phone"}'
    assert redact(plain) == plain  # the needle "api" alone masks nothing

def test_files_are_json_lines_rotated_and_masked(tmp_path: Path) -> None:
    setup_logging(tmp_path, LogSettings(max_bytes=2048, backups=2))
    log = logging.getLogger("server.test")
    try:
        for i in range(60):
            log.info("request", extra={"fields": {"i": i, "note": "vbk_0123456789ab_SECRETSECRET"}})
        log.error("boom", extra={"fields": {"dsn": "postgresql://u:pw123@h/db"}})
    finally:
        stop_logging()
    combined = sorted(tmp_path.glob("combined.log*"))
    assert [p.name for p in combined] == ["combined.log", "combined.log.1", "combined.log.2"]
    lines = [json.loads(line) for p in combined for line in p.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    errors = [json.loads(line) for line in (tmp_path / "error.log").read_text().splitlines()]
    assert [(e["level"], e["message"], e["dsn"]) for e in errors] == [("error", "boom", "postgresql://u:***@h/db")]
    everything = b"".join(p.read_bytes() for p in tmp_path.glob("*.log*"))
    assert b"SECRETSECRET" not in everything and b"pw123" not in everything


async def test_audit_rows_past_retention_are_pruned_at_start(make_server, home) -> None:
    conn = connect_state(home.state_db)
    with conn:
        conn.execute("INSERT INTO audit (ts, method, route, status, duration_ms) VALUES "
                     "('2020-01-01T00:00:00+00:00', 'POST', '/query', 200, 1.0), "
                     "('2999-01-01T00:00:00+00:00', 'POST', '/query', 200, 1.0)")
    conn.close()
    running = await make_server({"logging": {"audit_retention_days": 30}})
    for _ in range(50):
        rows = sqlite3.connect(home.state_db).execute("SELECT ts FROM audit ORDER BY ts").fetchall()
        if len(rows) == 1:
            break
        await asyncio.sleep(0.05)
    assert rows == [("2999-01-01T00:00:00+00:00",)]
    assert running.bridge.config.logging.audit_retention_days == 30
