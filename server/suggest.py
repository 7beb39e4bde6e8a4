"""'Suggest tools' in the Tools page: lookups and an insert per table, read from the database's schema.

Suggestions are starting points the owner reviews: each is a complete, valid tool spec with bound
parameters, typed from the column types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from server.db.base import Column, Table

LOOKUP_HINTS = ("phone", "email", "sku", "product_id", "code", "order_number", "reference", "username")
_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Suggestion:
    name: str
    spec: dict[str, Any]
    why: str


def _ident(name: str) -> str:
    return name if _SIMPLE.match(name) else '"' + name.replace('"', '""') + '"'


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "t"
    return slug if slug[0].isalpha() else f"t_{slug}"


def _singular(table: str) -> str:
    slug = _slug(table)
    if slug.endswith("ies"):
        return slug[:-3] + "y"
    if slug.endswith("s") and not slug.endswith("ss"):
        return slug[:-1]
    return slug


def param_type(column: Column) -> str:
    declared = column.type.lower()
    if "int" in declared or "serial" in declared:
        return "integer"
    if any(word in declared for word in ("real", "float", "double", "numeric", "decimal", "money")):
        return "number"
    if "bool" in declared:
        return "boolean"
    if declared == "date":
        return "date"
    return "string"


def _param(column: Column, *, required: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": param_type(column), "description": f"{column.name} ({column.type})"}
    if not required:
        spec["required"] = False
    return spec


def suggest(tables: list[Table], existing: set[str]) -> list[Suggestion]:
    found: list[Suggestion] = []
    taken = set(existing)

    def add(name: str, spec: dict[str, Any], why: str) -> None:
        name = name[:64]
        if name not in taken:
            taken.add(name)
            found.append(Suggestion(name, spec, why))

    for table in tables:
        if not table.columns:
            continue
        columns = ", ".join(_ident(c.name) for c in table.columns)
        source = _ident(table.name)
        singular = _singular(table.name)
        keys = [c for c in table.columns if c.primary_key]
        if len(keys) == 1:
            key = keys[0]
            pname = _slug(key.name)
            add(f"get_{singular}", {
                "kind": "query", "title": f"Get {singular.replace('_', ' ')}",
                "description": f"One {singular.replace('_', ' ')} by its {key.name}.",
                "sql": f"SELECT {columns} FROM {source} WHERE {_ident(key.name)} = :{pname}",
                "max_rows": 1, "params": {pname: _param(key)}},
                f"Voka can fetch one of {table.name} by its {key.name}, which is different for each")
        for column in table.columns:
            lowered = column.name.lower()
            if column.primary_key or not any(hint in lowered for hint in LOOKUP_HINTS):
                continue
            pname = _slug(column.name)
            add(f"find_{singular}_by_{pname}", {
                "kind": "query", "title": f"Find {singular.replace('_', ' ')} by {column.name}",
                "description": f"Look up {table.name} by {column.name}.",
                "sql": f"SELECT {columns} FROM {source} WHERE {_ident(column.name)} = :{pname}",
                "max_rows": 5, "params": {pname: _param(column)}},
                f"Voka can look up {table.name} by the {column.name} a caller gives")
        writable = [c for c in table.columns if not (c.primary_key and param_type(c) == "integer")]
        if writable and len(writable) <= 12:
            names = [_slug(c.name) for c in writable]
            add(f"create_{singular}", {
                "kind": "action", "title": f"Create {singular.replace('_', ' ')}",
                "description": f"Add a row to {table.name}.",
                "sql": (f"INSERT INTO {source} ({', '.join(_ident(c.name) for c in writable)}) "
                        f"VALUES ({', '.join(':' + n for n in names)})"),
                "params": {n: _param(c, required=not c.nullable)
                           for n, c in zip(names, writable, strict=True)}},
                f"Voka can add new {table.name}")
    return found
