"""Where the PostgreSQL password lives (keyring or DATABASE_URL, never config.toml or a message), TLS
settings, `voka-bridge db set-password`, and `voka-bridge check` on privileged roles.

Uses the private cluster, which (unlike a developer's trust-auth server) really asks for passwords.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ConfigError, load_config
from server.db.postgres import parse_url
from server.logs import JsonFormatter
from server.secretstore import SecretStore
from tests.conftest import RunningServer
from tests.postgres_support import PrivateCluster, pg_private  # noqa: F401  (fixture)

FIND = {"name": "find_customer_by_phone", "params": {"phone": "+15558594448"}}


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MCP_API_KEY")}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env=env)


class _Formatted(logging.Handler):
    """Formats records exactly as combined.log would (JSON, redacted)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def server_logs() -> list[str]:
    handler = _Formatted()
    root = logging.getLogger("server")
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


def test_url_parsing_keeps_the_password_out_of_the_dsn_and_description() -> None:
    target = parse_url("postgresql://shop:s3cret%21@db.example.com:6543/sales?sslmode=require")
    assert target.url_password == "s3cret!"
    assert "s3cret" not in target.dsn and "s3cret" not in target.describe()
    assert target.dsn == "postgresql://shop@db.example.com:6543/sales?sslmode=require"
    assert target.keyring_account == "database-password:shop@db.example.com:6543/sales"
    assert target.url_sslmode == "require" and not target.loopback
    query_form = parse_url("postgresql://shop@localhost/sales?password=hunter22&application_name=x")
    assert query_form.url_password == "hunter22" and "hunter22" not in query_form.dsn
    assert query_form.port == 5432 and query_form.loopback


def test_config_toml_may_not_hold_the_password(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "postgresql://shop:hunter22@127.0.0.1:5432/shop"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "voka-bridge db set-password" in str(caught.value) and "hunter22" not in str(caught.value)
    config.write_text('[database]\nurl = "postgresql://shop@127.0.0.1:5432/shop?password=hunter22"\n')
    with pytest.raises(ConfigError):
        load_config(config)
    config.write_text('[database]\nurl = "postgresql://shop@127.0.0.1:5432/shop"\nsslmode = "require"\n'
                      'lock_timeout_seconds = 1.5\n')
    loaded = load_config(config)
    assert loaded.database.sslmode == "require" and loaded.database.lock_timeout_seconds == 1.5


async def test_password_from_the_keyring_and_never_in_messages(make_server, pg_private: PrivateCluster,  # noqa: F811
                                                               server_logs: list[str]) -> None:
    url = pg_private.url()  # no password: it must come from the keyring
    account = parse_url(url).keyring_account
    secrets = SecretStore()
    secrets.delete(account)
    missing: RunningServer = await make_server(database_url=url)
    key = await missing.create_key("reader", ("query",))
    status, body, _ = await missing.get("/health", key=key)
    assert status == 503
    assert "refused the login for user 'shop_owner'" in body["error"]
    assert "voka-bridge db set-password" in body["error"]
    await missing.host.stop()

    secrets.set(account, pg_private.password)
    try:
        running: RunningServer = await make_server(database_url=url)
        key = await running.create_key("reader-2", ("query",))
        status, body, _ = await running.post("/query", FIND, key=key)
        assert status == 200 and body["data"][0]["name"] == "Ava Martin"
        status, body, _ = await running.get("/health", key=key)
        assert status == 200 and pg_private.password not in json.dumps(body)
    finally:
        secrets.delete(account)
    assert server_logs and not any(pg_private.password in line for line in server_logs)


async def test_a_wrong_database_url_password_is_masked_everywhere(make_server, pg_private: PrivateCluster,  # noqa: F811
                                                                  server_logs: list[str]) -> None:
    wrong = "Wr0ng-but-secret-pw"
    running: RunningServer = await make_server(database_url=pg_private.url(password=wrong))
    key = await running.create_key("reader", ("query",))
    status, body, _ = await running.get("/health", key=key)
    assert status == 503 and "refused the login" in body["error"]
    status, body, _ = await running.post("/query", FIND, key=key)
    assert status == 503 and wrong not in json.dumps(body)
    assert "database unavailable at start; will keep retrying" in "\n".join(server_logs)
    assert not any(wrong in line for line in server_logs)
    # The URL itself, logged anywhere, is masked too.
    logging.getLogger("server.test").info("url %s", pg_private.url(password=wrong))
    assert wrong not in server_logs[-1] and "***" in server_logs[-1]


async def test_sslmode_is_honoured(make_server, pg_private: PrivateCluster) -> None:  # noqa: F811
    running: RunningServer = await make_server({"database": {"sslmode": "require"}},
                                               database_url=pg_private.url(password=pg_private.password))
    key = await running.create_key("reader", ("query",))
    status, body, _ = await running.get("/health", key=key)
    assert status == 503  # this test server has no TLS, and `require` will not fall back to plain text
    assert "127.0.0.1" in body["error"]


async def test_raw_sql_through_a_superuser_needs_an_explicit_opt_in(make_server,
                                                                    pg_private: PrivateCluster) -> None:  # noqa: F811
    url = pg_private.url(user="voka_admin", password=pg_private.admin_password)
    refused: RunningServer = await make_server(database_url=url)
    key = await refused.create_key("analyst", ("query", "sql"))
    status, body, _ = await refused.post("/query", {"query": "SELECT 1 AS one"}, key=key)
    assert status == 403 and body["code"] == "privileged_role"
    assert "superuser" in body["error"] and "allow_privileged_role" in body["error"]
    status, body, _ = await refused.post("/query", FIND, key=key)
    assert status == 200  # catalog tools still work
    await refused.host.stop()

    allowed: RunningServer = await make_server({"database": {"allow_privileged_role": True}}, database_url=url)
    key = await allowed.create_key("analyst-2", ("query", "sql"))
    status, body, _ = await allowed.post("/query", {"query": "SELECT 1 AS one"}, key=key)
    assert status == 200 and body["data"] == [{"one": 1}]


def test_cli_set_password_then_check_and_privileged_role_advice(tmp_path: Path,
                                                                pg_private: PrivateCluster) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f'[database]\nurl = "{pg_private.url()}"\n')
    account = parse_url(pg_private.url()).keyring_account
    try:
        stored = run_cli("db", "set-password", "--home", str(home), stdin=pg_private.password + "\n")
        assert stored.returncode == 0, stored.stderr
        assert "Stored the password for shop_owner@127.0.0.1" in stored.stdout
        assert SecretStore().get(account) == pg_private.password
        checked = run_cli("check", "--home", str(home))
        assert checked.returncode == 0, checked.stderr
        assert "reachable, 3 table(s)" in checked.stdout and "warning" not in checked.stdout
        assert pg_private.password not in checked.stdout + checked.stderr
    finally:
        SecretStore().delete(account)
    forgotten = run_cli("check", "--home", str(home))
    assert forgotten.returncode == 1 and "refused the login for user 'shop_owner'" in forgotten.stderr

    admin_url = pg_private.url(user="voka_admin")
    (home / "config.toml").write_text(f'[database]\nurl = "{admin_url}"\n')
    admin_account = parse_url(admin_url).keyring_account
    assert run_cli("db", "set-password", "--home", str(home), stdin=pg_private.admin_password).returncode == 0
    try:
        checked = run_cli("check", "--home", str(home))
    finally:
        run_cli("db", "set-password", "--delete", "--home", str(home))
    assert SecretStore().get(admin_account) is None
    assert checked.returncode == 0, checked.stderr
    assert "warning: the database role 'voka_admin' is a superuser" in checked.stdout
    assert "raw SQL through this role is refused" in checked.stdout
    assert 'CREATE ROLE "voka_bridge" LOGIN' in checked.stdout
    assert 'GRANT INSERT ON customers TO "voka_bridge";' in checked.stdout
    assert 'GRANT UPDATE ON inventory TO "voka_bridge";' in checked.stdout
    assert pg_private.admin_password not in checked.stdout + checked.stderr


def test_cli_set_password_refuses_a_sqlite_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = run_cli("db", "set-password", "--home", str(home), stdin="whatever\n")
    assert result.returncode == 1 and "for a PostgreSQL database" in result.stderr
