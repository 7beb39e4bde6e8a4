"""Turn database values into JSON: one place, used by every response and every log line."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from typing import Any


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


def dumps(value: Any) -> str:
    return json.dumps(value, default=to_jsonable, ensure_ascii=False, separators=(",", ":"))
