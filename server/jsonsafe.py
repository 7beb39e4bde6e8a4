"""Turn database values into JSON: one place, used by every response and every log line.

orjson writes it (several times faster than the standard library, and JSON encoding is a visible share of
each request); the standard library takes over for the few values orjson refuses (integers past 64 bits,
unpaired surrogates), so what can be written never changes. Not-a-number and infinities (a PostgreSQL
float can hold them) are written as null, which every JSON reader accepts. Dataclasses go through
`default` like any other object rather than being written field by field.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def to_jsonable(value: Any) -> Any:
    """`json.dumps` default hook: ISO 8601 dates, exact decimals, base64 bytes, uuid strings."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        as_float = float(value)
        return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "items") and callable(value.items):  # asyncpg Record, mappings
        return dict(value.items())
    raise TypeError(f"cannot represent {type(value).__name__} as JSON")


def _stdlib(value: Any, default: Callable[[Any], Any]) -> str:
    return json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))


def dumps_bytes(value: Any, default: Callable[[Any], Any] = to_jsonable) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS)
    except TypeError:
        return _stdlib(value, default).encode()


def dumps(value: Any, default: Callable[[Any], Any] = to_jsonable) -> str:
    """Compact JSON text (`default=str` for log lines, where anything may be written as its text)."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except TypeError:
        return _stdlib(value, default)
