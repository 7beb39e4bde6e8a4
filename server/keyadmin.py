"""Key management for the desktop app: the same KeyStore the CLI uses, one short connection per call.

Each function is blocking (sqlite3 + keyring) and meant for a worker thread. The running server sees
every change within a second (it watches state.sqlite3), or at once after `Bridge.reload_keys()`.

Where the keyring did not take a new key's secret, this process still holds it until it ends, so the
owner can copy the key they were just shown; after a restart only the keyring can give a secret back.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from server.keys import ENV_KEY_ID, ApiKey, KeyProblem, KeyStore, Principal, hash_key
from server.paths import Paths
from server.secretstore import keyring_problem
from server.state import connect_state

NOT_STORED = ("This key's secret was shown once when it was made and is not stored on this PC ({why}). "
              "Rotate the key to get a new one.")

_made_here: dict[str, str] = {}
"""Key id -> secret, for keys this process made whose secret the keyring did not take."""


def remember(record: ApiKey, secret: str) -> None:
    """Hold a new secret for this run when the keyring did not keep it (see the module docstring)."""
    if record.secret_kept:
        _made_here.pop(record.id, None)
    else:
        _made_here[record.id] = secret


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
        record, secret = store.create(name.strip(), scopes, tools=tools, rate_limit=rate_limit)
    remember(record, secret)
    return record, secret


def rename_key(paths: Paths, key_id: str, new_name: str) -> ApiKey:
    with _store(paths) as store:
        return store.rename(key_id, new_name.strip())


def revoke_key(paths: Paths, key_id: str) -> ApiKey:
    with _store(paths) as store:
        record = store.revoke(key_id)
    _made_here.pop(record.id, None)
    return record


def rotate_key(paths: Paths, key_id: str, grace_hours: float) -> tuple[ApiKey, str]:
    with _store(paths) as store:
        record, secret = store.rotate(key_id, grace_hours)
    remember(record, secret)
    return record, secret


def _secret(store: KeyStore, record: ApiKey) -> str | None:
    """The key's current secret: held from this run, else from the keyring; None when neither has it."""
    held = _made_here.get(record.id)
    if held and hmac.compare_digest(hash_key(held), record.hash):
        return held
    return store.secret(record.id)


def key_secret(paths: Paths, key_id: str) -> str:
    """The secret to copy again; a KeyProblem in plain words when this PC does not have it."""
    with _store(paths) as store:
        secret = _secret(store, store.find(key_id))
    if secret is None:
        why = "no OS keyring" if keyring_problem() else "it is not in the OS keyring"
        raise KeyProblem(NOT_STORED.format(why=why))
    return secret


@dataclass(frozen=True)
class UsableKey:
    """A key the app can send requests with (the console) or hand to Voka (Copy API key)."""

    key_id: str
    name: str
    scopes: frozenset[str]
    secret: str


def usable_keys(paths: Paths, static: list[tuple[str, Principal]]) -> list[UsableKey]:
    """Keys whose secret this app can reach: MCP_API_KEY, then stored keys (held from this run or in the
    keyring), newest first."""
    found = [UsableKey(p.key_id, p.name, p.scopes, secret) for secret, p in static]
    with _store(paths) as store:
        for record in reversed(store.all()):
            if record.status not in ("active", "rotating"):
                continue
            secret = _secret(store, record)
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
