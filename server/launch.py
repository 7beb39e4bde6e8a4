"""Getting from a home folder to a ready Bridge: shared by `voka-bridge serve`, `check` and the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from server.bundled import ensure_default_catalog, ensure_demo_database
from server.config import Config, ConfigError, load_config
from server.keys import KeyProblem, KeyStore, Principal, env_principal, new_secret
from server.logs import register_secret
from server.paths import Paths
from server.secretstore import KeyringUnavailable
from server.state import connect_state


def prepare(paths: Paths, config_file: str | None, *, demo: bool) -> tuple[Config, str]:
    """Load the config, lay down default files, and decide which database URL to serve."""
    paths.ensure()
    config = load_config(Path(config_file) if config_file else paths.config_file)
    ensure_default_catalog(paths.tools_file)
    url = config.database.url
    if demo or not url:
        if not demo and not url:
            raise ConfigError("no database configured: set [database] url in config.toml or DATABASE_URL, "
                              "or run with --demo to try the bundled demo shop")
        ensure_demo_database(paths.demo_db)
        url = "sqlite:///" + paths.demo_db.as_posix().lstrip("/")
    return config, url


def first_run_keys(paths: Paths, *, demo: bool) -> tuple[list[tuple[str, Principal]], str | None]:
    """MCP_API_KEY if set; else, when no key exists yet, a first key (kept in the keyring if possible)."""
    env_key = os.environ.get("MCP_API_KEY", "").strip()
    if env_key:
        register_secret(env_key)
        return [(env_key, env_principal())], None
    conn = connect_state(paths.state_db)
    try:
        store = KeyStore(conn)
        if any(k.status in ("active", "rotating") for k in store.all()):
            return [], None
        scopes = ("query", "action", "sql") if demo else ("query", "action")
        try:
            _, secret = store.create("demo" if demo else "first-key", scopes)
            return [], secret
        except KeyringUnavailable:
            key_id = "runonly"
            secret = new_secret(key_id)
            print("No usable OS keyring: this key lives only until the server stops "
                  "(set MCP_API_KEY to keep one).", file=sys.stderr)
            return [(secret, Principal(key_id, "run-only key", frozenset(scopes)))], secret
        except KeyProblem:
            return [], None
    finally:
        conn.close()
