"""Named `:param` placeholders in catalog SQL: find them, and rewrite them to `$n` for PostgreSQL.

A small scanner (not a parser) that skips string literals, quoted identifiers, comments and `::` casts,
so `':x'` or `a::text` are never taken for parameters.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    '(?:[^']|'')*'            # string literal
  | "(?:[^"]|"")*"            # quoted identifier
  | --[^\n]*                  # line comment
  | /\*.*?\*/                 # block comment
  | ::                        # PostgreSQL cast
  | (?<![\w:]):(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE | re.DOTALL,
)


def named_params(sql: str) -> list[str]:
    """The distinct `:name` parameters in the order they first appear."""
    seen: dict[str, None] = {}
    for match in _TOKEN.finditer(sql):
        if match.group("name"):
            seen.setdefault(match.group("name"), None)
    return list(seen)


def to_numbered(sql: str) -> tuple[str, list[str]]:
    """Rewrite `:name` to `$1..$n`; returns the SQL and the parameter names in `$n` order."""
    order: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if not name:
            return match.group(0)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _TOKEN.sub(replace, sql), order
