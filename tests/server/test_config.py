"""config.toml: defaults, validation messages naming file and key, DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_config


def test_absent_config_means_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "config.toml")
    assert (config.server.host, config.server.port) == ("127.0.0.1", 3000)
    assert (config.rate_limit.requests, config.rate_limit.window_seconds) == (120, 60)
    assert (config.limits.max_body_bytes, config.limits.query_timeout_seconds, config.limits.max_rows) == (
        65536, 5, 1000)


@pytest.mark.parametrize(("text", "fragment"), [
    ("[server]\nport = 'x'\n", "server.port"),
    ("[server]\nport = 70000\n", "server.port"),
    ("[limits]\nmax_rowz = 5\n", "limits.max_rowz: unknown key"),
    ("[database]\nurl = 'mysql://x'\n", "database.url: must start with sqlite:/// or postgresql://"),
    ("[server\n", "not valid TOML"),
])
def test_invalid_config_names_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and fragment in str(caught.value)


def test_database_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///srv/shop.sqlite3")
    assert load_config(tmp_path / "config.toml").database.url == "sqlite:///srv/shop.sqlite3"
    monkeypatch.setenv("DATABASE_URL", "ftp://nope")
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_config(tmp_path / "config.toml")
