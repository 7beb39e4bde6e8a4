"""Reading request bodies: JSON only, size-capped, depth-capped, with messages a person can act on.

Parsing is strict on purpose: what two JSON parsers could read differently (duplicate keys, NaN,
numbers no database column can hold, unpaired UTF-16 surrogates) is refused here, once, for every
protocol adapter, instead of surprising a database driver later.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from aiohttp import web

from server.errors import BadRequest, ClientClosed, PayloadTooLarge, UnsupportedMediaType
from server.http.appstate import BODY

MAX_DEPTH = 32
MAX_STRING_CHARS = 20_000  # the longest raw SQL the executor takes; no catalog value needs more
_INT64 = 2**63
_JSON_NAMES = {"list": "array", "str": "string", "int": "number", "float": "number", "bool": "boolean",
               "NoneType": "null"}


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_json")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _invalid(f"The JSON object has the key {key[:64]!r} twice; send each key once.")
        result[key] = value
    return result


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 19 or not -_INT64 <= (value := int(text)) < _INT64:
        raise _invalid("A number in the JSON is too large; whole numbers must fit in 64 bits.")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _invalid("A number in the JSON is too large.")
    return value


def _constant(name: str) -> Any:
    raise _invalid(f"{name} is not a JSON value; send numbers as plain digits.")


# Built once: json.loads with hooks would build a new decoder (and its scanner) for every body.
_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_int=_integer, parse_float=_float,
                            parse_constant=_constant)


# orjson reads integers past 64 bits as floats, so a body with a run of 19 digits goes the strict way
# (digits mapped to 0, then one substring search: a regular expression took longer than the parse).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def _fast_parse(raw: bytes, text: str) -> Any:
    """orjson's reading of a body the strict parser would read the same way, or None to parse strictly
    (a typical tool call parses in half the time; None also for a body whose value is null). Only
    for bodies `_may_break_shape_rules` lets through: small enough and not deeply nested.

    orjson refuses NaN, infinities, lone surrogates and whatever else the strict parser refuses with a
    message, so a failure here just goes the strict way for its message. What it accepts and the strict
    parser does not: duplicate keys (it keeps the last) and integers past 64 bits (it makes floats). The
    second needs 19 digits in a row. The first is counted: without a backslash in the body every
    character of every string is literal, so writing the value back out gives each string unchanged and
    one colon per key. The body then has as many colons as its rewrite only if no key was dropped."""
    if "\\" in text or _LONG_NUMBER in raw.translate(_DIGITS_TO_ZERO):
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if text.count(":") != orjson.dumps(value).count(b":"):
        return None
    return value


def _check_text(text: str) -> None:
    if len(text) > MAX_STRING_CHARS:
        raise _invalid(f"A text value in the JSON is longer than {MAX_STRING_CHARS} characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("The JSON contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff).") from None


def _check_shape(value: Any, limit: int = MAX_DEPTH) -> None:
    """Nesting depth, string lengths and encodability, without recursion (so no RecursionError)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if depth > limit:
            raise _invalid(f"The JSON is nested too deeply (limit {limit}).")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def parse_json(raw: bytes) -> Any:
    """Strictly parse a request body; BadRequest (code invalid_json) for anything not acceptable."""
    if not raw.strip():
        raise _invalid("The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("The request body is not valid UTF-8 text.") from None
    shape_at_risk = _may_break_shape_rules(text)
    if not shape_at_risk:
        value = _fast_parse(raw, text)
        if value is not None:
            return value
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise _invalid(f"The JSON is nested too deeply (limit {MAX_DEPTH}).") from None
    except json.JSONDecodeError as exc:
        raise _invalid(f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
                       ) from None
    except ValueError:
        raise _invalid("The body is not valid JSON.") from None
    if shape_at_risk:
        _check_shape(value)
    return value


def _may_break_shape_rules(text: str) -> bool:
    """Whether the walk in _check_shape is needed. Escapes only shorten strings, unpaired surrogates can
    only come from `\\u` escapes (the text itself is valid UTF-8), and nesting needs brackets; most bodies
    are small and plain, and skip the walk."""
    return (len(text) > MAX_STRING_CHARS or "\\u" in text
            or text.count("{") + text.count("[") >= MAX_DEPTH)


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The parsed JSON body (any JSON value); 415/413/400 for what cannot be accepted. A body already
    read (the one-URL dispatcher looks at it to pick the protocol) is parsed again, not read again."""
    if BODY in request:
        return parse_json(request[BODY])
    if request.headers.get("Content-Type") != "application/json":  # the usual exact form skips the parse
        if request.content_type != "application/json":
            raise UnsupportedMediaType("Send the body as JSON with the header "
                                       "Content-Type: application/json.")
        charset = request.charset
        if charset and charset.lower().replace("-", "") != "utf8":
            raise UnsupportedMediaType("Send the JSON body as UTF-8 (Content-Type: application/json).")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the {max_bytes}-byte limit.")
    raw = await _read_capped(request, max_bytes)
    request[BODY] = raw
    return parse_json(raw)


async def _read_capped(request: web.Request, max_bytes: int) -> bytes:
    """The whole body however it arrives (chunked, in slow pieces), refused as soon as it passes the cap."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await request.content.readany()
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one
            raise ClientClosed("The client closed the connection before the request body arrived.") from None
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The request body is larger than the {max_bytes}-byte limit.")
        chunks.append(chunk)
        if request.content.at_eof():  # the usual whole body in one piece: no second call to see the end
            break
    return b"".join(chunks)


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    value = await read_json(request, max_bytes)
    if not isinstance(value, dict):
        raise BadRequest(f"The body must be a JSON object, not a JSON {_JSON_NAMES[type(value).__name__]}.",
                         code="invalid_json")
    return value
