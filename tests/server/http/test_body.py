"""The strict body parser: the quick pre-check must never let through what the full walk refuses."""

from __future__ import annotations

import json

import pytest

from server.errors import BadRequest
from server.http.body import MAX_DEPTH, MAX_STRING_CHARS, parse_json


def nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


def test_nesting_up_to_the_limit_is_read_and_one_more_level_is_refused() -> None:
    assert parse_json(nested(MAX_DEPTH - 1)) is not None
    assert parse_json(nested(MAX_DEPTH, "")) is not None  # the innermost empty list sits at the limit
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_json(nested(MAX_DEPTH))
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_json(b'{"a": ' + nested(MAX_DEPTH) + b"}")


@pytest.mark.parametrize("escaped", [False, True])
def test_text_values_longer_than_the_limit_are_refused_however_written(escaped: bool) -> None:
    def body(length: int) -> bytes:
        text = "\\u0041" * length if escaped else "A" * length
        return b'{"query": "' + text.encode() + b'"}'

    assert len(parse_json(body(MAX_STRING_CHARS))["query"]) == MAX_STRING_CHARS
    with pytest.raises(BadRequest, match="longer than"):
        parse_json(body(MAX_STRING_CHARS + 1))


def test_escaped_surrogates_pairs_pass_and_lone_ones_are_refused() -> None:
    assert parse_json(b'{"name": "\\ud83d\\ude00"}') == {"name": "\U0001F600"}
    with pytest.raises(BadRequest, match="surrogate"):
        parse_json(b'{"name": "ok", "x": ["\\udc00"]}')


def test_a_plain_body_is_parsed_exactly() -> None:
    body = {"jsonrpc": "2.0", "id": 1, "params": {"name": "t", "arguments": {"n": 5, "ok": True, "x": None}}}
    assert parse_json(json.dumps(body).encode()) == body
    with pytest.raises(BadRequest, match="twice"):
        parse_json(b'{"a": 1, "a": 2}')
