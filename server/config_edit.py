"""Writing config.toml from the app: change a few keys, validate the whole file, write it atomically.

tomlkit keeps the owner's comments. Secrets never go in: a database URL carrying a password is refused
(the password belongs in the keyring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import tomlkit
from pydantic import ValidationError

from server.config import Config, ConfigError, describe_validation_error
from server.files import TomlFile


def url_has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or any(key == "password" for key, _ in parse_qsl(parts.query))


class ConfigDocument(TomlFile):

    def get(self, section: str, key: str, default: Any = None) -> Any:
        table = self.doc.get(section)
        if table is None or key not in table:
            return default
        value = table[key]
        return value.unwrap() if hasattr(value, "unwrap") else value

    def set(self, section: str, key: str, value: Any) -> None:
        """Set a value; None (or "") removes the key so the default applies."""
        if section == "database" and key == "url" and isinstance(value, str) and url_has_password(value):
            raise ConfigError("The database URL must not contain the password: it would be stored in plain "
                              "text. Leave it out; Voka Bridge keeps the password in the system keyring.")
        if section not in self.doc:
            if value in (None, ""):
                return
            self.doc[section] = tomlkit.table()
        table = self.doc[section]
        if value in (None, ""):
            if key in table:
                del table[key]  # type: ignore[union-attr]
            return
        table[key] = value  # type: ignore[index]

    def update(self, values: dict[str, dict[str, Any]]) -> None:
        for section, entries in values.items():
            for key, value in entries.items():
                self.set(section, key, value)

    def validate(self) -> Config:
        try:
            return Config.model_validate(self.doc.unwrap())
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(self.path, exc)) from None

    def save(self) -> Config:
        """Validate, then replace config.toml atomically (nothing is written when invalid)."""
        config = self.validate()
        self.write()
        return config


def write_settings(path: Path, values: dict[str, dict[str, Any]]) -> Config:
    """Load, apply, validate and save in one step (for a worker thread)."""
    document = ConfigDocument.load(path)
    document.update(values)
    return document.save()
