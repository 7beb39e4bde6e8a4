"""Choosing the owner's database from the app: build the URL, test a connection in plain words, save.

The PostgreSQL password goes to the OS keyring under the account the PostgreSQL backend reads; the URL
in config.toml never carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from server.config import ConfigError, DatabaseSettings
from server.config_edit import ConfigDocument
from server.db import open_database
from server.db.base import Database, Table
from server.errors import BridgeError
from server.logs import register_secret
from server.secretstore import SecretStore

Kind = Literal["demo", "sqlite", "postgresql"]


@dataclass(frozen=True)
class DatabaseChoice:
    kind: Kind
    sqlite_path: str = ""
    host: str = "127.0.0.1"
    port: int = 5432
    database: str = ""
    user: str = ""
    sslmode: str = ""

    def url(self) -> str:
        """The [database] url for config.toml ("" means the bundled demo shop)."""
        if self.kind == "demo":
            return ""
        if self.kind == "sqlite":
            if not self.sqlite_path.strip():
                raise ConfigError("Choose the SQLite database file.")
            return "sqlite:///" + Path(self.sqlite_path.strip()).expanduser().resolve().as_posix().lstrip("/")
        if not (self.host.strip() and self.database.strip() and self.user.strip()):
            raise ConfigError("Fill in the PostgreSQL server, database name and user.")
        host = self.host.strip()
        host = f"[{host}]" if ":" in host else host
        return (f"postgresql://{quote(self.user.strip(), safe='')}@{host}:{self.port}/"
                f"{quote(self.database.strip(), safe='')}")

    @classmethod
    def from_url(cls, url: str, base_dir: Path) -> DatabaseChoice:
        if not url:
            return cls("demo")
        if url.startswith("sqlite:"):
            from server.db.sqlite import sqlite_path

            return cls("sqlite", sqlite_path=str(sqlite_path(url, base_dir)))
        from server.db.postgres import parse_url

        target = parse_url(url)
        return cls("postgresql", host=target.host, port=target.port, database=target.database,
                   user=target.user)


class _TypedPassword:
    """The password the owner just typed, offered to the backend instead of the keyring's."""

    def __init__(self, password: str) -> None:
        self.password = password

    def get(self, _account: str) -> str:
        return self.password


@dataclass(frozen=True)
class ConnectionReport:
    ok: bool
    message: str
    tables: list[Table]


def _backend(url: str, settings: DatabaseSettings, password: str | None, base_dir: Path) -> Database:
    if password and url.startswith(("postgresql:", "postgres:")):
        from server.db.postgres import PostgresDatabase

        register_secret(password)
        return PostgresDatabase(url, settings, secrets=_TypedPassword(password))  # type: ignore[arg-type]
    return open_database(settings, url=url, base_dir=base_dir)


async def test_connection(url: str, *, password: str | None = None, settings: DatabaseSettings | None = None,
                          base_dir: Path) -> ConnectionReport:
    """Connect, do a round trip, read the table list; say what went wrong in words an owner can act on."""
    settings = settings or DatabaseSettings()
    try:
        db = _backend(url, settings, password, base_dir)
        await db.open()
    except (BridgeError, ConfigError) as exc:
        return ConnectionReport(False, exc.detail if isinstance(exc, BridgeError) else str(exc), [])
    try:
        await db.ping()
        tables = await db.schema()
    except BridgeError as exc:
        return ConnectionReport(False, exc.detail, [])
    finally:
        await db.close()
    where = db.describe()
    if not tables:
        return ConnectionReport(True, f"Connected to {where}, but it has no tables yet.", [])
    return ConnectionReport(True, f"Connected to {where}: {len(tables)} table(s).", tables)


test_connection.__test__ = False  # type: ignore[attr-defined]  # a function, not a pytest test


def save_database(config_file: Path, choice: DatabaseChoice, password: str | None) -> str:
    """Write [database] url (and keep the PostgreSQL password in the keyring); returns the URL."""
    url = choice.url()
    document = ConfigDocument.load(config_file)
    document.set("database", "url", url or None)
    document.validate()
    if password and choice.kind == "postgresql":
        from server.db.postgres import parse_url

        SecretStore().set(parse_url(url).keyring_account, password)
    document.save()
    return url
