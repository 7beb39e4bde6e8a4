"""JSON Schema patterns read as ECMA-262 regular expressions, which is what the standard says they are.

Python's `re` gives `\\d`, `\\w` and `\\b` their Unicode meaning and counts a few control characters
(U+001C-U+001F, U+0085) as `\\s`; ECMA-262 keeps `\\d`/`\\w`/`\\b` to ASCII and has its own whitespace
set. A catalog pattern is published to Voka and MCP clients as JSON Schema, so the server must accept
exactly what those clients (and generators such as schemathesis) take the pattern to mean.
"""

from __future__ import annotations

import re
from typing import Any

# ECMA-262 WhiteSpace and LineTerminator code points: what `\s` matches there.
_LEADING_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")
_ECMA_SPACE = "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"


def ecma_pattern(pattern: str) -> str:
    """The Python pattern that matches what `pattern` matches under ECMA-262.

    `(?a)` makes `\\d`, `\\w` and `\\b` ASCII as in ECMA; `\\s` and `\\S` are spelled out as ECMA's set.
    (`\\S` inside a bracket expression keeps Python's ASCII reading: it has no in-class spelling.)"""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i + 1]
            if escape == "s":
                out.append(_ECMA_SPACE if in_class else f"[{_ECMA_SPACE}]")
            elif escape == "S" and not in_class:
                out.append(f"[^{_ECMA_SPACE}]")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            # A `]` right after `[` or `[^` is a literal member in Python's reading.
            for lead in ("^", "]"):
                if pattern.startswith(lead, i + 1):
                    out.append(lead)
                    i += 1
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        else:
            out.append(char)
        i += 1
    text = "".join(out)
    flags = _LEADING_FLAGS.match(text)  # Python wants global flags first, and only once
    if flags:
        return f"(?a{flags.group(1).replace('a', '')})" + text[flags.end():]
    return "(?a)" + text


def ecma_schema(schema: Any) -> Any:
    """A copy of a JSON Schema whose `pattern` keywords are rewritten by `ecma_pattern` (for validating;
    the schema published to clients keeps the owner's text)."""
    if isinstance(schema, dict):
        return {key: ecma_pattern(value) if key == "pattern" and isinstance(value, str)
                else ecma_schema(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [ecma_schema(item) for item in schema]
    return schema
