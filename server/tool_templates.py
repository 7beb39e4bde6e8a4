"""Built-in tool templates (resources/templates/*.toml) for the common cases, as starting points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tomlkit

import resources
from server.catalog import Catalog


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    name: str
    spec: dict[str, Any]


def templates() -> list[Template]:
    """Every shipped template, each validated as a one-tool catalog."""
    found = []
    folder = resources.path("templates")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomlkit.parse(entry.read_text(encoding="utf-8")).unwrap()
        Catalog.from_dict(data, f"templates/{entry.name}")
        for name, spec in data["tools"].items():
            found.append(Template(entry.name.removesuffix(".toml"), spec.get("title") or name, name, spec))
    return found
