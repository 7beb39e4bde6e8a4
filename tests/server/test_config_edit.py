"""config.toml writing and database choice: comments kept, validation first, no secret in any file."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_config
from server.config_edit import ConfigDocument, write_settings
from server.dbconnect import DatabaseChoice, save_database, test_connection
from server.secretstore import SecretStore


def test_write_settings_keeps_comments_and_validates(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text("# my notes\n[server]\nport = 3100  # the shop's port\n")
    write_settings(path, {"rate_limit": {"requests": 5}, "server": {"public_url": "https://x.example"}})
    text = path.read_text()
    assert "# my notes" in text and "# the shop's port" in text
    config = load_config(path)
    assert config.rate_limit.requests == 5 and config.server.port == 3100
    with pytest.raises(ConfigError, match=r"rate_limit\.requests"):
        write_settings(path, {"rate_limit": {"requests": 0}})
    assert load_config(path).rate_limit.requests == 5
    write_settings(path, {"server": {"public_url": None}})
    assert "public_url" not in path.read_text()


def test_database_url_with_a_password_is_refused(tmp_path: Path):
    document = ConfigDocument.load(tmp_path / "config.toml")
    with pytest.raises(ConfigError, match="must not contain the password"):
        document.set("database", "url", "postgresql://shop:hunter2@db.local:5432/shop")
    assert not (tmp_path / "config.toml").exists()


def test_database_choice_urls(tmp_path: Path):
    assert DatabaseChoice("demo").url() == ""
    sqlite_url = DatabaseChoice("sqlite", sqlite_path=str(tmp_path / "a b.sqlite3")).url()
    assert sqlite_url.startswith("sqlite:///") and sqlite_url.endswith("a b.sqlite3")
    assert DatabaseChoice.from_url(sqlite_url, tmp_path).sqlite_path == str(tmp_path / "a b.sqlite3")
    pg = DatabaseChoice("postgresql", host="db.local", port=5433, database="shop", user="voka bridge")
    assert pg.url() == "postgresql://voka%20bridge@db.local:5433/shop"
    assert DatabaseChoice.from_url(pg.url(), tmp_path) == pg
    with pytest.raises(ConfigError, match="PostgreSQL server"):
        DatabaseChoice("postgresql", host="db.local").url()


def test_save_postgres_choice_keeps_the_password_in_the_keyring_only(tmp_path: Path):
    config_file = tmp_path / "config.toml"
    choice = DatabaseChoice("postgresql", host="127.0.0.1", port=5999, database="shop", user="owner")
    url = save_database(config_file, choice, "pw-in-keyring-77")
    assert "pw-in-keyring-77" not in config_file.read_text()
    assert load_config(config_file).database.url == url
    from server.db.postgres import parse_url

    account = parse_url(url).keyring_account
    try:
        assert SecretStore().get(account) == "pw-in-keyring-77"
    finally:
        SecretStore().delete(account)


async def test_connection_reports(home, tmp_path: Path):
    ok = await test_connection("sqlite:///" + home.demo_db.as_posix().lstrip("/"), base_dir=tmp_path)
    assert ok.ok and "3 table(s)" in ok.message and {t.name for t in ok.tables} == {"customers", "inventory",
                                                                                    "orders"}
    missing = await test_connection("sqlite:///" + (tmp_path / "none.db").as_posix().lstrip("/"),
                                    base_dir=tmp_path)
    assert not missing.ok and "does not exist" in missing.message


def test_reach_settings_for_tunnel_and_public_address(tmp_path: Path):
    from server.connect import Reach, apply_connection, voka_form

    tunnel = Reach("tunnel", "https://shop.trycloudflare.com/", 3000)
    assert tunnel.server_settings()["host"] == "127.0.0.1"
    assert voka_form(" ", tunnel, "vbk_k").url == "https://shop.trycloudflare.com"
    public = Reach("public", "https://203.0.113.7:3000", 3000)
    assert public.server_settings()["tls_self_signed"] is True and public.server_settings()["host"] == "0.0.0.0"
    with pytest.raises(ConfigError, match="https://"):
        Reach("tunnel", "http://shop.example.com", 3000).server_settings()
    with pytest.raises(ConfigError, match="both the certificate"):
        Reach("public", "https://x.example", 3000, tls_cert="c.pem").server_settings()
    config = apply_connection(tmp_path / "config.toml", DatabaseChoice("demo"), None, public)
    assert config.server.tls_self_signed and config.server.public_url == "https://203.0.113.7:3000"
    assert config.database.url == ""
