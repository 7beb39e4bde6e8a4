"""Database values to JSON: orjson for speed, the standard library for what orjson refuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid

import pytest

from server.jsonsafe import dumps, dumps_bytes


def test_database_values_are_written_as_before() -> None:
    value = {"d": dt.date(2025, 6, 5), "t": dt.datetime(2025, 6, 5, 10, 0, 0, 123000, tzinfo=dt.UTC),
             "n": decimal.Decimal("12.50"), "big": decimal.Decimal("1234567890.123456789012"),
             "u": uuid.UUID(int=1), "b": b"\x00\xff", "s": {1}, "nested": [{"k": "é"}], 3: "int key"}
    assert json.loads(dumps(value)) == {
        "d": "2025-06-05", "t": "2025-06-05T10:00:00.123000+00:00", "n": 12.5,
        "big": "1234567890.123456789012", "u": "00000000-0000-0000-0000-000000000001", "b": "AP8=",
        "s": [1], "nested": [{"k": "é"}], "3": "int key"}
    assert dumps_bytes({"k": "é"}) == '{"k":"é"}'.encode()


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    assert json.loads(dumps({"n": 2**70})) == {"n": 2**70}
    assert json.loads(dumps_bytes([-(2**64) - 1])) == [-(2**64) - 1]
    assert dumps({"s": "\ud800"}) == '{"s":"\ud800"}'  # text as it was; bytes cannot hold it
    with pytest.raises(UnicodeEncodeError):
        dumps_bytes({"s": "\ud800"})


def test_not_a_number_becomes_null_so_every_reader_can_parse_the_answer() -> None:
    assert dumps([float("nan"), float("inf"), -float("inf"), 1.5]) == "[null,null,null,1.5]"


def test_dataclasses_are_not_written_field_by_field() -> None:
    @dataclasses.dataclass
    class Target:
        host: str
        password: str = dataclasses.field(repr=False)

    with pytest.raises(TypeError):
        dumps({"target": Target("db", "hunter2")})
    logged = dumps({"target": Target("db", "hunter2")}, default=str)
    assert "hunter2" not in logged and "db" in logged
