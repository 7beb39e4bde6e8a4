"""The strict body parser: the quick pre-check must never let through what the full walk refuses."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import BadRequest
from server.http import body
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


# ---- the orjson fast path must read every body exactly as the strict parser does ----------------------
def _strictly(raw: bytes) -> Any:
    with patch.object(body, "_fast_parse", lambda raw, text: None):
        return _outcome(raw)


def _outcome(raw: bytes) -> Any:
    """The parsed value with every type spelled out (1, 1.0 and True compare equal in Python), or the
    refusal's message."""
    try:
        return _typed(parse_json(raw))
    except BadRequest as exc:
        return ("refused", exc.message)


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return ("object", [(key, _typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("array", [_typed(item) for item in value])
    return (type(value).__name__, value)


_texts = st.text(alphabet=st.sampled_from([*'ab:"\\/ é\n{}[],0', "\u2028", "\U0001F600"]), max_size=6)
_numbers = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=False),
                     st.sampled_from(["1e400", "-0", "-0.0", "1E5", "1.5e-400", "NaN", "Infinity", "01"]))


def _render(tree: Any) -> str:
    if isinstance(tree, tuple) and tree[0] == "object":  # pairs, so a key can appear twice
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)} : {_render(v)}" for k, v in tree[1]) + "}"
    if isinstance(tree, list):
        return "[" + ", ".join(_render(item) for item in tree) + "]"
    if isinstance(tree, str):
        return tree if tree[:1].isdigit() or tree[:1] in "-NI0" else json.dumps(tree, ensure_ascii=False)
    return json.dumps(tree)


_values = st.recursive(
    st.one_of(st.none(), st.booleans(), _texts, _numbers.map(str)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(st.sampled_from(["a", "b", "a:b", "c"]), inner), max_size=4).map(
            lambda pairs: ("object", pairs))),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_the_fast_path_reads_every_body_as_the_strict_parser_does(tree: Any) -> None:
    raw = _render(("object", [("params", tree)])).encode()
    assert _outcome(raw) == _strictly(raw)


@pytest.mark.parametrize("raw", [
    b'{"a": "x:y", "a": 1}',  # a duplicate whose colons hide in a string
    b'{"a": 1, "b": {"a": 2, "a": 3}}',
    b'{"n": 9223372036854775808}', b'{"n": -9223372036854775809}', b'{"n": 18446744073709551616}',
    b'{"x": 1e400}', b'{"x": NaN}', b'{"s": "\\ud800"}', b'{"a": 1,}', b'\xef\xbb\xbf{"a": 1}',
    b'{"a": "\\u003a", "a": 2}',  # an escaped colon must not make up for a dropped key
])
def test_what_orjson_would_accept_or_bend_is_refused_as_before(raw: bytes) -> None:
    assert _outcome(raw)[0] == "refused"
    assert _outcome(raw) == _strictly(raw)


def test_a_typical_tool_call_takes_the_fast_path() -> None:
    raw = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "t", "arguments": {"phone": "+15558594448", "at": "12:30"}}}).encode()
    assert body._fast_parse(raw, raw.decode()) == parse_json(raw) == json.loads(raw)
