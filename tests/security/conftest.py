"""Helpers for attacking the live server: raw sockets (for what a polite HTTP client refuses to send),
audit-log reads, CLI processes, and a fingerprint of the demo database's contents."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.bridge import Bridge

SECRET_MARKERS = ("Traceback", 'File "', "sqlite3.", "aiohttp", "site-packages", "/work/", "asyncpg",
                  "Exception", "Error:")


async def raw_exchange(url: str, *parts: bytes, pause: float = 0.0, read_timeout: float = 15.0) -> bytes:
    """Send raw bytes (optionally in pieces with pauses); read one whole answer, or until the server closes."""
    split = urlsplit(url)
    reader, writer = await asyncio.open_connection(split.hostname, split.port)
    try:
        for index, part in enumerate(parts):
            if index and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        chunks = []
        while True:
            # A server that neither answers nor closes within read_timeout fails the test here.
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            chunks.append(chunk)
            if _complete(b"".join(chunks)):
                break
        return b"".join(chunks)
    finally:
        writer.close()


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0


def body_of(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[2]


def request_bytes(method: str, path: str, *, host: str, headers: dict[str, str] | None = None,
                  body: bytes = b"", content_length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or content_length is not None:
        lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def host_of(url: str) -> str:
    return urlsplit(url).netloc


async def audit_rows(bridge: Bridge, limit: int = 500) -> list[dict[str, Any]]:
    """The audit log as the owner sees it, after the writer has flushed what is pending."""
    await bridge.audit.flush()
    return await bridge.on_state(bridge.audit.recent, limit)  # type: ignore[no-any-return]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def database_digest(path: Path) -> str:
    """A digest of every row of every table: equal digests mean the data did not change."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")]
        for table in tables:
            digest.update(table.encode())
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
                digest.update(repr(row).encode())
        return digest.hexdigest()
    finally:
        conn.close()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@contextmanager
def captured_logs(name: str) -> Iterator[Captured]:
    """Records of one logger, whatever handlers (files, queues) the process has set up."""
    logger = logging.getLogger(name)
    handler = Captured()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
