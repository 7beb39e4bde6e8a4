"""Key management for the desktop app: the same KeyStore the CLI uses, one short connection per call.

Each function is blocking (sqlite3 + keyring) and meant for a worker thread. The running server sees
every change within a second (it watches state.sqlite3), or at once after `Bridge.reload_keys()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from server.keys import ENV_KEY_ID, ApiKey, KeyStore, Principal
from server.paths import Paths
from server.state import connect_state


@contextmanager
def _store(paths: Paths) -> Iterator[KeyStore]:
    paths.ensure()
    conn = connect_state(paths.state_db)
    try:
        yield KeyStore(conn)
    finally:
        conn.close()


def list_keys(paths: Paths) -> list[ApiKey]:
    with _store(paths) as store:
        return store.all()


def create_key(paths: Paths, name: str, scopes: tuple[str, ...], *, tools: tuple[str, ...] | None = None,
               rate_limit: int | None = None) -> tuple[ApiKey, str]:
    with _store(paths) as store:
        return store.create(name.strip(), scopes, tools=tools, rate_limit=rate_limit)


def rename_key(paths: Paths, key_id: str, new_name: str) -> ApiKey:
    with _store(paths) as store:
        return store.rename(key_id, new_name.strip())


def revoke_key(paths: Paths, key_id: str) -> ApiKey:
    with _store(paths) as store:
        return store.revoke(key_id)


def rotate_key(paths: Paths, key_id: str, grace_hours: float) -> tuple[ApiKey, str]:
    with _store(paths) as store:
        return store.rotate(key_id, grace_hours)


def key_secret(paths: Paths, key_id: str) -> str | None:
    with _store(paths) as store:
        return store.secret(key_id)


@dataclass(frozen=True)
class UsableKey:
    """A key the app can send requests with (the console) or hand to Voka (Copy API key)."""

    key_id: str
    name: str
    scopes: frozenset[str]
    secret: str


def usable_keys(paths: Paths, static: list[tuple[str, Principal]]) -> list[UsableKey]:
    """Keys whose secret this app can reach: MCP_API_KEY / run-only keys, then keyring keys, newest first."""
    found = [UsableKey(p.key_id, p.name, p.scopes, secret) for secret, p in static]
    with _store(paths) as store:
        for record in reversed(store.all()):
            if record.status not in ("active", "rotating"):
                continue
            secret = store.secret(record.id)
            if secret:
                found.append(UsableKey(record.id, record.name, frozenset(record.scopes), secret))
    return found


def voka_key(paths: Paths, static: list[tuple[str, Principal]]) -> UsableKey | None:
    """The key to give Voka: MCP_API_KEY when set, else the newest usable key that may run tools."""
    keys = usable_keys(paths, static)
    for key in keys:
        if key.key_id == ENV_KEY_ID:
            return key
    for key in keys:
        if {"query", "action"} <= key.scopes:
            return key
    return keys[0] if keys else None
