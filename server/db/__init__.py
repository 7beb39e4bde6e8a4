"""Database backends behind one interface (server.db.base.Database)."""

from __future__ import annotations

from pathlib import Path

from server.config import ConfigError, DatabaseSettings
from server.db.base import Database


def open_database(settings: DatabaseSettings, *, url: str, base_dir: Path) -> Database:
    """Build (not yet connect) the backend the URL names."""
    if url.startswith("sqlite:"):
        from server.db.sqlite import SqliteDatabase, sqlite_path

        return SqliteDatabase(sqlite_path(url, base_dir), readers=settings.read_connections)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from server.db.postgres import PostgresDatabase
        except ImportError:
            raise ConfigError("PostgreSQL support is not available in this build.") from None
        return PostgresDatabase(url, settings)
    raise ConfigError(f"database.url: unsupported database URL scheme in {url.split(':', 1)[0]!r}")
