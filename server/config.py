"""config.toml: server settings, validated on load with errors that name the file and the key."""

from __future__ import annotations

import functools
import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(Exception):
    """A config or catalog file is unusable; the message names the file, the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@functools.lru_cache(maxsize=64)
def is_loopback_host(host: str) -> bool:
    """Asked on every request (the Host check), so remembered per name."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    tls_cert: str = ""
    tls_key: str = ""
    # No certificate of your own: generate a self-signed one (kept in the data folder) and serve HTTPS.
    tls_self_signed: bool = False
    # Plain HTTP off loopback only when the owner terminates TLS in a proxy of their own.
    allow_insecure_http: bool = False
    # Trust X-Forwarded-For (set only when a tunnel or proxy on this machine is in front).
    trust_forwarded_for: bool = False
    allowed_origins: list[str] = Field(default_factory=list)
    public_url: str = ""
    # Ask `{public_url}/health` every 30 s to notice a tunnel or router that is down (the tray turns
    # "degraded"); off for tunnels that must not be probed.
    check_public_url: bool = True
    shutdown_timeout_seconds: float = Field(10.0, gt=0, le=300)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key) or self.tls_self_signed

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


class DatabaseSettings(_Section):
    url: str = ""  # empty: the bundled demo database
    pool_min: int = Field(1, ge=0, le=100)
    pool_max: int = Field(10, ge=1, le=200)
    connect_timeout_seconds: float = Field(5.0, gt=0, le=120)
    read_connections: int = Field(4, ge=1, le=64)
    allow_privileged_role: bool = False
    # PostgreSQL: TLS to the server ("" = the URL's sslmode, else disable on loopback, prefer elsewhere),
    # how long a statement may wait for a lock, and how long a request may queue for a pooled connection.
    sslmode: Literal["", "disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = ""
    lock_timeout_seconds: float = Field(2.0, gt=0, le=600)
    acquire_timeout_seconds: float = Field(2.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class RateLimitSettings(_Section):
    requests: int = Field(120, ge=1)
    window_seconds: float = Field(60, gt=0)
    failed_auth_per_minute: int = Field(10, ge=1)
    max_concurrent_per_key: int = Field(32, ge=1)


class LimitSettings(_Section):
    max_body_bytes: int = Field(65536, ge=256, le=64 * 1024 * 1024)
    query_timeout_seconds: float = Field(5, gt=0, le=600)
    max_rows: int = Field(1000, ge=1, le=1_000_000)
    request_timeout_seconds: float = Field(30, gt=0, le=600)
    # An open connection that sends no complete request for this long is closed (slow-loris headers).
    idle_timeout_seconds: float = Field(30, gt=0, le=3600)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    backups: int = Field(5, ge=1, le=100)
    audit_retention_days: int = Field(90, ge=1)


class Config(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    logging: LogSettings = Field(default_factory=LogSettings)


def describe_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} problem(s)"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None


def _has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or any(key == "password" for key, _ in parse_qsl(parts.query))


def load_config(path: Path) -> Config:
    """Read config.toml (absent means all defaults) and apply DATABASE_URL from the environment."""
    data = read_toml(path) if path.exists() else {}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc)) from None
    if _has_password(config.database.url):
        raise ConfigError(f"{path}: database.url: must not contain the password; store it in the OS keyring "
                          "with `voka-bridge db set-password` (or pass DATABASE_URL in the environment)")
    env_url = os.environ.get("DATABASE_URL")
    if env_url:
        try:
            config.database.url = env_url
        except ValidationError:
            raise ConfigError("DATABASE_URL: must start with sqlite:/// or postgresql://") from None
    return config
