"""Getting from a home folder to a ready Bridge: shared by `voka-bridge serve`, `check` and the app."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from server.bundled import ensure_default_catalog, ensure_demo_database
from server.catalog import Catalog, ParamSpec, Tool, described_examples
from server.config import Config, ConfigError, load_config
from server.errors import InvalidParams
from server.keys import ApiKey, KeyProblem, KeyStore, Principal, env_principal
from server.logs import register_secret
from server.paths import Paths
from server.state import connect_state


def prepare(paths: Paths, config_file: str | None, *, demo: bool) -> tuple[Config, str]:
    """Load the config, lay down default files, and decide which database URL to serve."""
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"{config_file}: no such file (given with --config); check the path, or leave "
                          "--config out to use the home folder's config.toml")
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


log = logging.getLogger(__name__)

ENV_KEY_MIN = 16  # refused below: guessable, and it carries every scope
ENV_KEY_GOOD = 32  # warned below


def _check_env_key(key: str) -> None:
    """MCP_API_KEY is taken with full scopes, so a short one is a weak spot worth saying out loud."""
    advice = ("use a long random value, e.g. the output of "
              "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, or a key from "
              "`voka-bridge keys create`")
    if len(key) < ENV_KEY_MIN:
        raise ConfigError(f"MCP_API_KEY is only {len(key)} characters, and it opens every tool and raw SQL: "
                          f"at least {ENV_KEY_MIN} are required ({ENV_KEY_GOOD} or more recommended); "
                          f"{advice}")
    if len(key) < ENV_KEY_GOOD:
        message = (f"MCP_API_KEY is only {len(key)} characters and opens every tool and raw SQL; "
                   f"{ENV_KEY_GOOD} or more are recommended: {advice}")
        log.warning(message)
        print(f"warning: {message}", file=sys.stderr)


FIRST_KEY_NAME = "Voka AI"
FIRST_KEY_SCOPES = ("query", "action")
"""The key made on a first start: named for who uses it, and allowed only the owner's tools. Raw SQL
reads every table, so it is never handed out unasked (`keys create --scopes query,action,sql` asks)."""


def first_run_keys(paths: Paths) -> tuple[list[tuple[str, Principal]], tuple[ApiKey, str] | None]:
    """The static keys (MCP_API_KEY when set) and, when there is no key at all yet, a first key with its
    secret for the caller to show once. The first key is an ordinary key in state (its hash), so it
    works across restarts with or without a keyring."""
    env_key = os.environ.get("MCP_API_KEY", "").strip()
    if env_key:
        _check_env_key(env_key)
        register_secret(env_key)
        return [(env_key, env_principal())], None
    conn = connect_state(paths.state_db)
    try:
        store = KeyStore(conn)
        if any(k.status in ("active", "rotating") for k in store.all()):
            return [], None
        try:
            return [], store.create(FIRST_KEY_NAME, FIRST_KEY_SCOPES)
        except KeyProblem:
            return [], None
    finally:
        conn.close()


def _examples(tool: Tool, spec: ParamSpec, *, loose: bool) -> list[Any]:
    """Values worth trying for one parameter: its default or first choice, a number in range, what its
    description shows after "e.g." and, `loose`, what the tool's description shows."""
    if spec.default is not None:
        return [spec.default]
    if spec.enum:
        return [spec.enum[0]]
    if spec.type in ("integer", "number"):
        return [int(spec.min) if spec.min is not None else 1]
    if spec.type == "boolean":
        return [True]
    if spec.type == "date":
        return [dt.date.today().isoformat()]
    return described_examples(spec.description) + (described_examples(tool.description) if loose else [])


def first_call(catalog: Catalog, scopes: Collection[str]) -> dict[str, Any] | None:
    """A first request a new key may make, for the "Try it" line `serve` prints: a catalog query whose
    parameters have examples that pass its own checks (the parameters' own examples first), else raw SQL
    when the key may run it."""
    queries = [tool for tool in catalog if tool.kind == "query"] if "query" in scopes else []
    for loose in (False, True):
        for tool in queries:
            needed = {name: _examples(tool, spec, loose=loose) for name, spec in tool.params.items()
                      if spec.required}
            for values in itertools.product(*needed.values()):
                params = dict(zip(needed, values, strict=True))
                try:
                    tool.bind(params)
                except InvalidParams:
                    continue
                return {"name": tool.name, "params": params}
    if "sql" in scopes:
        return {"query": "SELECT 1 AS one"}
    return None
