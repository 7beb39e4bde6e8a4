"""The running server's tunnel status in the data folder (`tunnel.json`), for `voka-bridge tunnel status`.

The server rewrites it on every change and every few seconds while it runs (a heartbeat), so a file that
has not been touched for a while belongs to a server that is gone. It also remembers each provider's last
public address, so the app can say when a quick tunnel's address changed, even across restarts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from server.events import TunnelChanged
from server.files import atomic_write_text

log = logging.getLogger(__name__)

STATUS_FILE = "tunnel.json"
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 3 * HEARTBEAT_SECONDS


class StatusFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def last_url(self, provider: str) -> str:
        urls = self.read().get("last_urls")
        return str(urls.get(provider, "")) if isinstance(urls, dict) else ""

    def write(self, status: TunnelChanged, *, running: bool, applied: str = "") -> None:
        """Record the current status (and, once up, the provider's address); never fails the caller.
        `applied`: the stamp of the config.toml whose [tunnel] the server has applied (read_config), so
        `voka-bridge tunnel start|stop` knows when the server has seen what it wrote."""
        data = self.read()
        urls = data.get("last_urls") if isinstance(data.get("last_urls"), dict) else {}
        if status.state == "up" and status.public_url:
            urls[status.provider] = status.public_url
        record = {**asdict(status), "running": running, "pid": os.getpid(), "updated_at": time.time(),
                  "applied": applied, "last_urls": urls}
        try:
            atomic_write_text(self.path, json.dumps(record, indent=1))
        except OSError as exc:  # a reader holding the file open on Windows; the next heartbeat retries
            log.debug("tunnel status not written: %s", exc)


def read_config(path: Path) -> tuple[str, bytes | None]:
    """config.toml's bytes, and a stamp that changes with every write of it (even of the same text: a
    second `tunnel start` retries a failed tunnel); ("", None) when there is none."""
    try:
        data = path.read_bytes()
        written = path.stat().st_mtime_ns
    except FileNotFoundError:
        return "", None
    return hashlib.sha256(data + f"@{written}".encode()).hexdigest(), data


def live(data: dict[str, Any], now: float | None = None) -> bool:
    """Whether the status comes from a server that is running now."""
    updated = data.get("updated_at")
    return bool(data.get("running")) and isinstance(updated, int | float) and \
        (now if now is not None else time.time()) - updated < STALE_SECONDS
