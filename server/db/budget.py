"""How large an answer is getting, counted while its rows arrive (`[limits] max_response_bytes`).

Each row's size is a lower bound of its JSON text, estimated from the values as they come (the text of a
string, the base64 of bytes, one byte for a number, the column names the row repeats): cheap enough for
every row of every read, and a row of values adds at least that much to the answer. A backend stops
fetching as soon as the running total passes the limit and raises ResponseTooLarge, so an oversized answer
is never held whole, let alone encoded. The tool executor measures the real JSON only of answers that come
close to the limit (the estimate is exact for plain text, and at most a few times low for text full of
characters JSON escapes).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Sequence
from typing import Any

from server.errors import ResponseTooLarge

_SCALARS = (int, float, bool, type(None))
_DATES = (dt.date, dt.datetime)
_CAPPED = 16  # see rows_size


def value_size(value: Any) -> int:
    """A lower bound of the bytes `value` takes as JSON (nested lists and objects included)."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind in _SCALARS:
        return 1
    size = 0
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str:
            size += len(item) + 2
        elif kind in _SCALARS:
            size += 1
        elif isinstance(item, bytes | bytearray | memoryview):
            size += (len(item) + 2) // 3 * 4 + 2  # base64
        elif isinstance(item, dict):
            size += 1 + len(item)  # {}, and a comma between two entries
            for key, inner in item.items():
                size += len(str(key)) + 3
                pending.append(inner)
        elif isinstance(item, list | tuple):
            size += 1 + len(item)
            pending.extend(item)
        elif isinstance(item, decimal.Decimal):
            size += len(item.as_tuple().digits)
        elif isinstance(item, dt.date | dt.time):
            size += 10
        elif isinstance(item, dt.timedelta):  # written as its seconds
            size += 3
        else:
            size += len(str(item))
    return size


def row_size(values: Iterable[Any]) -> int:
    """The values of one row (not its column names); the common types are counted inline."""
    size = 0
    for value in values:
        kind = type(value)
        if kind is str:
            size += len(value) + 2
        elif kind in _SCALARS:
            size += 1
        elif kind in _DATES:
            size += 10
        else:
            size += value_size(value)
    return size


def fixed_size(columns: Sequence[str], rows: int) -> int:
    """What `rows` rows add besides their values: [], and per row {}, the column names (quoted, with a
    colon) and the commas."""
    return 1 + rows * (2 + 4 * len(columns) + sum(map(len, columns)))


def rows_size(columns: Sequence[str], rows: Sequence[Iterable[Any]], limit: int,
              value_cap: int | None = None) -> int:
    """The size of rows already fetched (a few, or ones whose arrival was bounded otherwise), as
    AnswerBudget would count them; ResponseTooLarge past `limit`.

    `value_cap`: no value of these rows is longer than this many bytes (the engine refused longer ones).
    Then an answer of few enough values is under the limit whatever they hold, and only its fixed part
    is counted: at most 6 bytes of JSON per byte of a value (an escaped control character) or of a column
    name, and twice that and more over MCP (sent twice, escaped again), stays under _CAPPED times the
    values' cap and the fixed part."""
    size = fixed_size(columns, len(rows))
    if value_cap is not None and _CAPPED * (size + len(rows) * len(columns) * value_cap) <= limit:
        return size
    for values in rows:
        size += row_size(values)
    if size > limit:
        raise ResponseTooLarge(limit)
    return size


class AnswerBudget:
    """The running size of one answer's rows; `add` raises ResponseTooLarge past `limit` bytes."""

    __slots__ = ("limit", "per_row", "used")

    def __init__(self, limit: int, columns: Sequence[str]) -> None:
        self.limit = limit
        self.used = fixed_size(columns, 0)
        self.per_row = fixed_size(columns, 1) - self.used

    def add(self, values: Iterable[Any]) -> None:
        self.used += self.per_row + row_size(values)
        if self.used > self.limit:
            raise ResponseTooLarge(self.limit)
