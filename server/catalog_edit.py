"""Editing tools.toml from the app: change one tool, validate the whole catalog, then write atomically.

tomlkit keeps the owner's comments and the layout of every tool the edit does not touch. Nothing is
written unless the result loads as a valid catalog, so a bad edit can never break the running server;
the caller then swaps it in with `Bridge.reload_catalog()`.
"""

from __future__ import annotations

import copy
from typing import Any

import tomlkit
from tomlkit.items import Table

from server.catalog import TOOL_NAME, Catalog
from server.config import ConfigError
from server.files import TomlFile

ToolSpecDict = dict[str, Any]


def _value(value: Any, key: str = "") -> Any:
    if isinstance(value, str) and "\n" in value:
        return tomlkit.string(value if value.endswith("\n") else value + "\n", multiline=True)
    if isinstance(value, dict):
        if key == "schema":
            inline = tomlkit.inline_table()
            inline.update(value)
            return inline
        table = tomlkit.table(is_super_table=key == "params")
        for sub_key, sub_value in value.items():
            if sub_value is not None:
                table[sub_key] = _value(sub_value, sub_key)
        return table
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and key == "steps":
        array = tomlkit.aot()
        for entry in value:
            array.append(_value(entry))
        return array
    return value


def tool_table(spec: ToolSpecDict) -> Table:
    """One tool as a TOML table, keys in a readable order, empty values left out."""
    order = ["kind", "title", "description", "sql", "max_rows", "cache_ttl_seconds", "destructive",
             "idempotent", "json_columns", "events", "params", "steps"]
    table = tomlkit.table()
    for key in sorted(spec, key=lambda k: order.index(k) if k in order else len(order)):
        value = spec[key]
        if value is None or value == "" or (key in ("params", "json_columns", "events", "steps")
                                            and not value):
            continue
        table[key] = _value(value, key)
    return table


class CatalogDocument(TomlFile):

    def _tools(self) -> Table:
        if "tools" not in self.doc:
            self.doc["tools"] = tomlkit.table(is_super_table=True)
        return self.doc["tools"]  # type: ignore[return-value]

    def names(self) -> list[str]:
        return list(self._tools().keys())

    def spec(self, name: str) -> ToolSpecDict:
        """A plain-Python copy of one tool's settings."""
        return copy.deepcopy(self._tools()[name].unwrap())  # type: ignore[union-attr]

    def catalog(self) -> Catalog:
        """Validate the whole document as the server would load it (raises ConfigError naming the tool)."""
        return Catalog.from_dict(self.doc.unwrap(), str(self.path))

    def _edited(self, change: Any) -> CatalogDocument:
        """A changed copy that is valid, or ConfigError and this document untouched."""
        clone = CatalogDocument(self.path, tomlkit.parse(tomlkit.dumps(self.doc)))
        change(clone._tools())
        clone.catalog()
        return clone

    def with_tool(self, name: str, spec: ToolSpecDict, *, replacing: str | None = None) -> CatalogDocument:
        if not TOOL_NAME.match(name):
            raise ConfigError("A tool name is lowercase letters, digits and _ (at most 64), starting with a "
                              "letter, e.g. find_customer_by_phone.")
        if name != replacing and name in self._tools():
            raise ConfigError(f"A tool named {name} already exists; choose another name.")

        def change(tools: Table) -> None:
            table = tool_table(spec)
            if replacing is not None and replacing in tools and replacing == name:
                tools[name] = table
                return
            if replacing is not None and replacing in tools:
                del tools[replacing]
            tools[name] = table

        return self._edited(change)

    def without_tool(self, name: str) -> CatalogDocument:
        if name not in self._tools():
            raise ConfigError(f"There is no tool named {name}.")
        return self._edited(lambda tools: tools.remove(name))

    def free_name(self, base: str) -> str:
        stem = base[:58]
        if stem not in self._tools():
            return stem
        number = 2
        while f"{stem}_{number}" in self._tools():
            number += 1
        return f"{stem}_{number}"

    def save(self) -> Catalog:
        """Validate, then replace tools.toml atomically; returns the catalog that was written."""
        catalog = self.catalog()
        self.write()
        return catalog

    def text(self) -> str:
        return tomlkit.dumps(self.doc)
