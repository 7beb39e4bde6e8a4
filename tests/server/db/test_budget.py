"""The running size of an answer (server.db.budget): a lower bound of its JSON, found while rows arrive."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from server.db.budget import AnswerBudget, row_size, rows_size, value_size
from server.errors import ResponseTooLarge
from server.jsonsafe import dumps_bytes

ROWS = [
    {"id": 1, "name": "Ann", "note": None, "vip": True, "score": 0.5},
    {"id": 2, "name": "Żółw \u00e9t\u00e9 \U0001f600", "note": "a \"quoted\" \\ line\n", "vip": False,
     "score": 1e300},
    {"id": 3, "blob": b"\x00" * 100, "when": dt.date(2026, 1, 2), "price": decimal.Decimal("12.50"),
     "tags": ["a", "b", {"c": [1, 2, 3]}], "doc": {"k": "v" * 50}},
]


@pytest.mark.parametrize("row", ROWS)
def test_the_estimate_is_a_lower_bound_of_the_json_and_not_far_from_it(row: dict) -> None:
    budget = AnswerBudget(10**9, list(row))
    budget.add(row.values())
    actual = len(dumps_bytes([row]))
    assert budget.used <= actual < 8 * budget.used


def test_values_are_counted_by_their_json_text() -> None:
    assert value_size("x" * 1000) == 1002
    assert value_size(b"\x00" * 300) == 402  # base64
    assert value_size([["a" * 10] * 10]) >= 120
    assert row_size(["abc", 1, None, 2.5]) == 5 + 1 + 1 + 1


def test_the_budget_stops_at_the_first_row_past_the_limit() -> None:
    budget = AnswerBudget(10_000, ["v"])
    added = 0
    with pytest.raises(ResponseTooLarge) as refused:
        for _ in range(1000):
            budget.add(["x" * 1000])
            added += 1
    assert added == 9 and refused.value.code == "response_too_large" and refused.value.status == 400
    assert "fewer rows or columns" in refused.value.message


def test_a_whole_answer_counted_at_once_is_counted_as_the_budget_counts_it_row_by_row() -> None:
    columns = ["id", "name", "note", "vip", "score"]
    rows = [tuple(row.get(c) for c in columns) for row in ROWS]
    budget = AnswerBudget(10**9, columns)
    for values in rows:
        budget.add(values)
    assert rows_size(columns, rows, budget.used) == budget.used
    with pytest.raises(ResponseTooLarge):
        rows_size(columns, rows, budget.used - 1)
