"""Files shipped in resources/: the demo database and the default tool catalog."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import resources


def bundled_text(name: str) -> str:
    return resources.path(name).read_text(encoding="utf-8")


def ensure_default_catalog(path: Path) -> bool:
    """Write the bundled tools.toml where none exists yet; True when it wrote one."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bundled_text("tools.toml"), encoding="utf-8")
    return True


def ensure_demo_database(path: Path) -> bool:
    """Create the demo shop database from resources/demo (atomically); True when it created it."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".demo-", suffix=".sqlite3", dir=path.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(temp, isolation_level=None)
        try:
            conn.executescript(bundled_text("demo/schema.sqlite.sql"))
            conn.executescript(bundled_text("demo/data.sql"))
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return True
