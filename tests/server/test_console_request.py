"""Console helpers: typing form input by the tool's schema, request bodies, and the curl command."""

from __future__ import annotations

import shlex

import pytest

from server.catalog import Catalog
from server.console import coerce_form, curl_command, sql_request, tool_request
from server.errors import InvalidParams

CATALOG = Catalog.from_dict({"tools": {
    "find": {"kind": "query", "description": "d", "sql": "SELECT :n AS n, :f AS f, :b AS b, :j AS j",
             "params": {"n": {"type": "integer", "min": 1}, "f": {"type": "number", "required": False},
                        "b": {"type": "boolean", "required": False}, "j": {"type": "json", "required": False}}},
    "make": {"kind": "action", "description": "d", "sql": "INSERT INTO t VALUES (:x)",
             "params": {"x": {"type": "string", "pattern": "^[a-z]+$"}}},
}})


def test_form_values_are_typed_and_validated_by_the_tool_schema():
    tool = CATALOG.get("find")
    assert tool is not None
    assert coerce_form(tool, {"n": "3", "f": "2.5", "b": "true", "j": '[1, {"a": 2}]'}) == \
        {"n": 3, "f": 2.5, "b": True, "j": [1, {"a": 2}]}
    assert coerce_form(tool, {"n": " 7 ", "f": "", "b": ""}) == {"n": 7}
    with pytest.raises(InvalidParams, match="n is required"):
        coerce_form(tool, {"n": ""})
    with pytest.raises(InvalidParams, match="n must be a integer"):
        coerce_form(tool, {"n": "seven"})
    with pytest.raises(InvalidParams, match="j must be valid JSON"):
        coerce_form(tool, {"n": "1", "j": "{nope"})
    with pytest.raises(InvalidParams, match="minimum"):
        coerce_form(tool, {"n": "0"})


def test_request_bodies_and_curl():
    make = CATALOG.get("make")
    assert make is not None
    assert tool_request(make, {"x": "abc"}) == ("/action", {"action": "make", "params": {"x": "abc"}})
    assert sql_request("SELECT 1", []) == ("/query", {"query": "SELECT 1"})
    command = curl_command("http://127.0.0.1:3000", "/query", "vbk_a_b", {"query": "SELECT 'it''s'"})
    parts = shlex.split(command)
    assert parts[:5] == ["curl", "-sS", "-X", "POST", "http://127.0.0.1:3000/query"]
    assert parts[parts.index("-d") + 1] == '{"query": "SELECT \'it\'\'s\'"}'
    assert "-k" in shlex.split(curl_command("https://127.0.0.1:3000", "/query", "k", {}))
    assert "-k" not in shlex.split(curl_command("https://shop.example.com", "/query", "k", {}))
