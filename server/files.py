"""Writing files people edit (config.toml, tools.toml) so a crash never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Self

import tomlkit
from tomlkit.toml_document import TOMLDocument

from server.config import ConfigError


def atomic_write_text(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: readers see the old file or the new, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class TomlFile:
    """A TOML file edited in place with tomlkit, so the owner's comments and layout survive."""

    def __init__(self, path: Path, document: TOMLDocument) -> None:
        self.path = path
        self.doc = document

    @classmethod
    def load(cls, path: Path) -> Self:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        try:
            return cls(path, tomlkit.parse(text))
        except tomlkit.exceptions.TOMLKitError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    def write(self) -> None:
        atomic_write_text(self.path, tomlkit.dumps(self.doc))
