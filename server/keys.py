"""API keys: creation, rotation with a grace period, revocation, and constant-time verification.

A key reads `vbk_<id>_<secret>`. The id finds the record; the SHA-256 of the whole key is compared in
constant time with the stored hash. Verifying needs only that hash, so a key works without any keyring;
the key itself is in the caller's hands and, where there is one, in the OS keyring (for copying again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from dataclasses import dataclass, field

from server.secretstore import KeyringUnavailable, SecretStore

KEY_PREFIX = "vbk_"
SCOPES = ("query", "action", "sql")
DEFAULT_SCOPES = ("query", "action")
ENV_KEY_ID = "env"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class KeyProblem(Exception):
    """A key operation the owner asked for cannot be done (unknown key, bad name, ...)."""


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def keyring_account(key_id: str) -> str:
    return f"api-key:{key_id}"


def parse_scopes(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_SCOPES
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise KeyProblem(f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
    return scopes


@dataclass(frozen=True)
class Principal:
    """Who is calling: what auth established, and all that later stages need to decide."""

    key_id: str
    name: str
    scopes: frozenset[str]
    tools: frozenset[str] | None = None
    rate_limit: int | None = None

    def may_use_tool(self, name: str) -> bool:
        return self.tools is None or name in self.tools


@dataclass
class ApiKey:
    id: str
    name: str
    hash: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    tools: tuple[str, ...] | None = None
    rate_limit: int | None = None
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    use_count: int = 0
    revoked_at: dt.datetime | None = None
    old_hash: str | None = None
    old_expires_at: dt.datetime | None = None
    secret_kept: bool | None = field(default=None, compare=False)
    """Set on the record `create`/`rotate` return: whether the keyring took the new secret (None when
    read from state, which never knows)."""
    principal: Principal = field(init=False)

    def __post_init__(self) -> None:
        self.principal = Principal(self.id, self.name, frozenset(self.scopes),
                                   frozenset(self.tools) if self.tools is not None else None,
                                   self.rate_limit)

    @property
    def status(self) -> str:
        now = now_utc()
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        if self.old_hash and self.old_expires_at and self.old_expires_at > now:
            return "rotating"
        return "active"

    def matches(self, presented_hash: str, when: dt.datetime) -> bool:
        if self.revoked_at or (self.expires_at and self.expires_at <= when):
            return False
        if hmac.compare_digest(presented_hash, self.hash):
            return True
        return bool(self.old_hash and self.old_expires_at and self.old_expires_at > when
                    and hmac.compare_digest(presented_hash, self.old_hash))

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple) -> ApiKey:
        (id_, name, hash_, scopes, tools, rate_limit, created, expires, last_used, count, revoked,
         old_hash, old_expires) = row
        return cls(id_, name, hash_, tuple(scopes.split(",")), _parse(created),  # type: ignore[arg-type]
                   tuple(json.loads(tools)) if tools else None, rate_limit, _parse(expires),
                   _parse(last_used), count, _parse(revoked), old_hash, _parse(old_expires))


_COLUMNS = ("id, name, hash, scopes, tools, rate_limit, created_at, expires_at, last_used_at, use_count, "
            "revoked_at, old_hash, old_expires_at")


def new_secret(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(presented: str) -> str | None:
    if not presented.startswith(KEY_PREFIX):
        return None
    parts = presented.split("_", 2)
    return parts[1] if len(parts) == 3 and parts[1] else None


def env_principal() -> Principal:
    """MCP_API_KEY, the headless deployments' key: accepted with every scope."""
    return Principal(ENV_KEY_ID, "MCP_API_KEY", frozenset(SCOPES))


class KeyStore:
    """Key records in state.sqlite3 and their secrets in the keyring (synchronous; CLI and server)."""

    def __init__(self, conn: sqlite3.Connection, secrets_: SecretStore | None = None) -> None:
        self.conn = conn
        self.secrets = secrets_ or SecretStore()

    def all(self) -> list[ApiKey]:
        rows = self.conn.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at, name").fetchall()
        return [ApiKey.from_row(row) for row in rows]

    def find(self, id_or_name: str) -> ApiKey:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = ? OR name = ?",
                                (id_or_name, id_or_name)).fetchone()
        if row is None:
            raise KeyProblem(f"no key with id or name {id_or_name!r}")
        return ApiKey.from_row(row)

    def create(self, name: str, scopes: tuple[str, ...] = DEFAULT_SCOPES, *,
               tools: tuple[str, ...] | None = None, rate_limit: int | None = None,
               expires_at: dt.datetime | None = None) -> tuple[ApiKey, str]:
        """Store a new key (its hash); the secret also goes to the keyring where there is one."""
        self._check_new_name(name)
        for scope in scopes:
            if scope not in SCOPES:
                raise KeyProblem(f"unknown scope {scope!r}; choose from {', '.join(SCOPES)}")
        if rate_limit is not None and rate_limit < 1:
            raise KeyProblem("a rate limit must be at least 1 request per window")
        key_id = secrets.token_hex(6)
        secret = new_secret(key_id)
        record = ApiKey(key_id, name, hash_key(secret), tuple(scopes), now_utc(), tools, rate_limit,
                        expires_at)
        self.conn.execute(
            f"INSERT INTO keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL, NULL, NULL)",
            (record.id, record.name, record.hash, ",".join(record.scopes),
             json.dumps(list(tools)) if tools is not None else None, rate_limit,
             _iso(record.created_at), _iso(expires_at)))
        record.secret_kept = self._keep_secret(key_id, secret)
        return record, secret

    def _keep_secret(self, key_id: str, secret: str) -> bool:
        """Put the secret in the keyring so the owner can copy it again. Optional: the key is verified
        by its hash in state, so without a (working) keyring the caller just shows the secret once."""
        try:
            self.secrets.set(keyring_account(key_id), secret)
        except KeyringUnavailable:
            self.secrets.delete(keyring_account(key_id))  # never leave an older secret to be copied
            return False
        return True

    def _check_new_name(self, name: str, key_id: str | None = None) -> None:
        """The same rules for create and rename: a readable name, unique among all keys."""
        if not _NAME.match(name):
            raise KeyProblem("a key name is 1-64 letters, digits, spaces, dots, dashes or underscores")
        if self.conn.execute("SELECT 1 FROM keys WHERE name = ? AND id IS NOT ?", (name, key_id)).fetchone():
            raise KeyProblem(f"a key named {name!r} already exists")

    def rename(self, id_or_name: str, new_name: str) -> ApiKey:
        """A new name for the same key; the secret (and so Voka's setup) stays as it is. Audit rows
        written from now on carry the new name; older rows keep the name they were written with."""
        record = self.find(id_or_name)
        self._check_new_name(new_name, record.id)
        self.conn.execute("UPDATE keys SET name = ? WHERE id = ?", (new_name, record.id))
        return self.find(record.id)

    def revoke(self, id_or_name: str) -> ApiKey:
        record = self.find(id_or_name)
        if not record.revoked_at:
            self.conn.execute("UPDATE keys SET revoked_at = ? WHERE id = ?", (_iso(now_utc()), record.id))
        self.secrets.delete(keyring_account(record.id))
        return self.find(record.id)

    def rotate(self, id_or_name: str, grace_hours: float = 24.0) -> tuple[ApiKey, str]:
        """A new secret for the same key; the old one keeps working for `grace_hours`, then dies."""
        record = self.find(id_or_name)
        if record.revoked_at:
            raise KeyProblem(f"key {record.name!r} is revoked; create a new one instead")
        if grace_hours < 0:
            raise KeyProblem("the grace period cannot be negative")
        secret = new_secret(record.id)
        old_expires = now_utc() + dt.timedelta(hours=grace_hours) if grace_hours else None
        self.conn.execute(
            "UPDATE keys SET hash = ?, old_hash = ?, old_expires_at = ? WHERE id = ?",
            (hash_key(secret), record.hash if grace_hours else None, _iso(old_expires), record.id))
        rotated = self.find(record.id)
        rotated.secret_kept = self._keep_secret(record.id, secret)
        return rotated, secret

    def secret(self, id_or_name: str) -> str | None:
        """The key itself, from the keyring (so the owner can copy it again); None when the keyring is
        missing or does not hold the key's current secret."""
        record = self.find(id_or_name)
        secret = self.secrets.get(keyring_account(record.id))
        return secret if secret and hmac.compare_digest(hash_key(secret), record.hash) else None

    def record_usage(self, usage: dict[str, tuple[int, dt.datetime]]) -> None:
        self.conn.executemany(
            "UPDATE keys SET use_count = use_count + ?, last_used_at = ? WHERE id = ?",
            [(count, _iso(last), key_id) for key_id, (count, last) in usage.items()])


class KeyVerifier:
    """The hot-path view of the keys: a dict by id, swapped whole when the records change."""

    def __init__(self, keys: list[ApiKey], static: list[tuple[str, Principal]] | None = None) -> None:
        self.by_id = {k.id: k for k in keys}
        self.static = [(secret.encode(), principal) for secret, principal in static or []]

    def verify(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        encoded = presented.encode()
        for secret, principal in self.static:
            if hmac.compare_digest(encoded, secret):
                return principal
        key_id = key_id_of(presented)
        record = self.by_id.get(key_id) if key_id else None
        if record is None or not record.matches(hash_key(presented), now_utc()):
            return None
        return record.principal

    def why_refused(self, presented: str) -> str:
        """For the audit log only (never the caller): why `presented` did not verify."""
        key_id = key_id_of(presented)
        if key_id is None:
            return "not a Voka Bridge key"
        record = self.by_id.get(key_id)
        if record is None:
            return "unknown key id (another install, or deleted)"
        when = now_utc()
        if record.revoked_at:  # by name: the owner reads these (server.stats explains them)
            return f"revoked key {record.name}"
        if record.expires_at and record.expires_at <= when:
            return f"expired key {record.name}"
        if record.old_hash and hmac.compare_digest(hash_key(presented), record.old_hash):
            return f"rotated-out secret of key {record.name}"
        return f"wrong secret for key {record.name}"
