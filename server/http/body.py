"""Reading request bodies: JSON only, size-capped, depth-capped, with messages a person can act on."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from server.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_DEPTH = 32
_JSON_NAMES = {"list": "array", "str": "string", "int": "number", "float": "number", "bool": "boolean",
               "NoneType": "null"}


def _depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The parsed JSON body (any JSON value); 415/413/400 for what cannot be accepted."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as JSON with the header Content-Type: application/json.")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the {max_bytes}-byte limit.")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is larger than the {max_bytes}-byte limit.")
    request["voka.body"] = raw
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The request body is not valid UTF-8 text.", code="invalid_json") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadRequest(f"The JSON is nested too deeply (limit {MAX_DEPTH}).", code="invalid_json") from None
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.",
                         code="invalid_json") from None
    if not _depth_ok(value):
        raise BadRequest(f"The JSON is nested too deeply (limit {MAX_DEPTH}).", code="invalid_json")
    return value


async def read_json_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    value = await read_json(request, max_bytes)
    if not isinstance(value, dict):
        raise BadRequest(f"The body must be a JSON object, not a JSON {_JSON_NAMES[type(value).__name__]}.",
                         code="invalid_json")
    return value
