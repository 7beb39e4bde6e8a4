"""config.toml: server settings, validated on load with errors that name the file and the key."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator


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
    # Open MCP event streams (GET on the MCP transport, subscriptions/listen) per key: places of their own,
    # so streams never hold the request places above.
    max_streams_per_key: int = Field(4, ge=1, le=1000)


class LimitSettings(_Section):
    max_body_bytes: int = Field(65536, ge=256, le=64 * 1024 * 1024)
    query_timeout_seconds: float = Field(5, gt=0, le=600)
    max_rows: int = Field(1000, ge=1, le=1_000_000)
    # An answer whose rows, as JSON, would take more than this is refused (400 response_too_large);
    # counted while the rows arrive, so memory stays bounded. SQLite also refuses any single value (a
    # result or an intermediate one) larger than this.
    max_response_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    request_timeout_seconds: float = Field(30, gt=0, le=600)
    # An event stream that has carried no message for this long is closed (the client may open another).
    stream_idle_seconds: float = Field(600, gt=0, le=86400)
    # An open connection that sends no complete request for this long is closed (slow-loris headers).
    idle_timeout_seconds: float = Field(30, gt=0, le=3600)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    backups: int = Field(5, ge=1, le=100)
    audit_retention_days: int = Field(90, ge=1)


TunnelProvider = Literal["", "ngrok", "cloudflare-quick", "cloudflare-named"]
TUNNEL_PROVIDERS: tuple[str, ...] = get_args(TunnelProvider)
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class TunnelSettings(_Section):
    """The managed tunnel (server/tunnel/): which one, and its fixed public host name if it has one.

    The ngrok authtoken and the Cloudflare tunnel token live in the OS keyring, never here."""

    provider: TunnelProvider = ""
    # ngrok: the account's reserved domain (an address that never changes); cloudflare-named: the public
    # host name given to the tunnel at Cloudflare; ignored by a quick tunnel (its address is random).
    domain: str = Field("", validate_default=True)
    # The loopback port the tunnel forwards to (a listener of its own, so the server can tell tunnelled
    # callers from direct ones). 0: chosen by the system, except for a named Cloudflare tunnel, whose
    # service address is set in Cloudflare's dashboard: there 0 means [server] port + 1.
    ingress_port: int = Field(0, ge=0, le=65535)

    @field_validator("domain")
    @classmethod
    def _host_name(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip().lower()
        if "://" in value:  # a pasted address: keep its host name
            value = urlsplit(value).hostname or ""
        value = value.rstrip("/").rstrip(".")
        if value and (len(value) > 253 or "." not in value
                      or not all(_HOST_LABEL.match(label) for label in value.split("."))):
            raise ValueError(f"{value!r} is not a host name; write it like shop.ngrok.app "
                             "(no https://, no path)")
        if not value and info.data.get("provider") == "cloudflare-named":
            raise ValueError("a named Cloudflare tunnel needs its public host name (the one set for the "
                             "tunnel at Cloudflare, e.g. voka.example.com)")
        return value


class WebhookSettings(_Section):
    """Events to Voka (server/webhooks/). Voka's API key and the signing secret live in the keyring."""

    url: str = ""  # where events are POSTed (Voka's webhook URL); empty = off
    max_age_hours: float = Field(24.0, gt=0, le=24 * 30)  # retried this long, then a dead letter
    timeout_seconds: float = Field(10.0, gt=0, le=120)  # one delivery attempt
    first_retry_seconds: float = Field(5.0, gt=0, le=3600)  # the back-off starts here and doubles (max 1 h)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("must be an http:// or https:// address, e.g. https://hooks.voka.ai/...")
        return value


class Config(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    logging: LogSettings = Field(default_factory=LogSettings)
    tunnel: TunnelSettings = Field(default_factory=TunnelSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)


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
