"""Connect to Voka AI: how Voka reaches this PC, what goes in config.toml, and the three values Voka's
"Add MCP Server" form asks for (Name, URL, API Key)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from server.config import Config, ConfigError
from server.config_edit import write_settings
from server.dbconnect import DatabaseChoice, save_database

# Where Voka's form is, in one wording for the wizard and the Connect page.
VOKA_PATH = "AI Assistants → Edit assistant → Agent → MCP Servers → Add MCP Server"


@dataclass(frozen=True)
class Reach:
    """How Voka reaches this PC: the managed tunnel (server/tunnel/, its address comes from the provider),
    a tunnel the owner runs themselves to loopback, or this PC's own public address over HTTPS."""

    mode: Literal["managed", "tunnel", "public"]
    public_url: str
    port: int
    tls_cert: str = ""
    tls_key: str = ""

    def checked_url(self) -> str:
        url = self.public_url.strip().rstrip("/")
        parts = urlsplit(url)
        if self.mode == "managed":  # the provider's own address (always https:// from a real one)
            if not parts.hostname:
                raise ConfigError("Start the tunnel first: Voka needs the address it gets.")
            return url
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError("Voka needs an https:// address, e.g. https://shop.example.com (a tunnel "
                              "prints one).")
        return url

    def server_settings(self) -> dict[str, Any]:
        url = self.checked_url()
        if self.mode == "managed":  # [tunnel] is saved by the tunnel switch; its address is the provider's
            return {"host": "127.0.0.1", "port": self.port, "public_url": None, "trust_forwarded_for": None,
                    "tls_self_signed": None, "tls_cert": None, "tls_key": None}
        if self.mode == "tunnel":
            return {"host": "127.0.0.1", "port": self.port, "public_url": url, "trust_forwarded_for": True,
                    "tls_self_signed": None, "tls_cert": None, "tls_key": None}
        if bool(self.tls_cert.strip()) != bool(self.tls_key.strip()):
            raise ConfigError("Give both the certificate and its private key, or neither (a self-signed "
                              "certificate is made then).")
        own = bool(self.tls_cert.strip())
        return {"host": "0.0.0.0", "port": self.port, "public_url": url, "trust_forwarded_for": None,
                "tls_self_signed": None if own else True, "tls_cert": self.tls_cert.strip() or None,
                "tls_key": self.tls_key.strip() or None}


@dataclass(frozen=True)
class VokaForm:
    name: str
    url: str
    api_key: str


def voka_form(name: str, reach: Reach, api_key: str) -> VokaForm:
    return VokaForm(name.strip() or "Shop database", reach.checked_url(), api_key)


def apply_connection(config_file: Path, database: DatabaseChoice, password: str | None,
                     reach: Reach) -> Config:
    """Write the chosen database and reach settings (validated first; the password to the keyring)."""
    settings = reach.server_settings()
    database.url()
    save_database(config_file, database, password)
    return write_settings(config_file, {"server": settings})
