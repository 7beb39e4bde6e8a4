"""Property-based fuzzing (hypothesis) of every route and every catalog tool on the live server.

Properties: never a 5xx, always a well-formed JSON answer, and a key that may only read never changes a
single row, whatever it sends. Tool arguments come from each tool's own JSON Schema (valid values, then
mutations and arbitrary JSON), so new catalog tools are fuzzed without new test code.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server.bundled import bundled_text, ensure_demo_database
from server.catalog import Catalog
from tests.conftest import RunningServer, ServerFactory
from tests.security.conftest import database_digest

FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
NO_LIMITS = {"rate_limit": {"requests": 1_000_000, "failed_auth_per_minute": 1_000_000}}
EXPECTED = {200, 400, 401, 403, 404, 409, 413, 415}
MCP_VERSIONS = [None, "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28", "1999-01-01"]

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


CATALOG = Catalog.from_dict(tomllib.loads(bundled_text("tools.toml")))  # the catalog the server serves
QUERIES = [t for t in CATALOG if t.kind == "query"]
ACTIONS = [t for t in CATALOG if t.kind == "action"]


def from_schema(schema: dict[str, Any], hints: dict[str, list[Any]], name: str = "") -> st.SearchStrategy[Any]:
    """Values valid for the subset of JSON Schema the catalog produces (with real ids mixed in)."""
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "object":
        properties = {k: from_schema(v, hints, k) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries({k: v for k, v in properties.items() if k in required},
                                     optional={k: v for k, v in properties.items() if k not in required})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), hints, name), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 5), 5))
    if kind == "integer":
        low, high = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63 - 1)
        base = st.integers(int(low), int(high))
        return st.sampled_from(hints[name]) | base if name in hints else base
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if schema.get("format") == "date":
            base = st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)).map(dt.date.isoformat)
        elif "pattern" in schema:
            base = st.from_regex(schema["pattern"], fullmatch=True)
        else:
            base = st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 60), 60))
        return st.sampled_from(hints[name]) | base if name in hints else base
    return json_values


def tool_args(tool: Any, hints: dict[str, list[Any]]) -> st.SearchStrategy[Any]:
    valid = from_schema(tool.input_schema, hints)
    mutated = st.tuples(valid, st.sampled_from(list(tool.params) or ["x"]), json_values).map(
        lambda t: {**t[0], t[1]: t[2]})
    extra = st.tuples(valid, st.text(min_size=1, max_size=8), json_values).map(lambda t: {**t[0], t[1]: t[2]})
    return st.one_of(valid, valid, valid, valid, mutated, extra, json_values, st.none())


def _demo() -> tuple[dict[str, list[Any]], str]:
    """Real ids from a pristine demo database (so calls reach real rows), and its content digest."""
    path = Path(tempfile.mkdtemp()) / "demo.sqlite3"
    ensure_demo_database(path)
    conn = sqlite3.connect(path)
    try:
        def column(sql: str) -> list[Any]:
            return [row[0] for row in conn.execute(sql)]
        hints = {"product_id": column("SELECT product_id FROM inventory"),
                 "phone": column("SELECT phone FROM customers LIMIT 20"),
                 "customer_id": column("SELECT id FROM customers ORDER BY id LIMIT 20"),
                 "order_id": column("SELECT id FROM orders LIMIT 20")}
    finally:
        conn.close()
    return hints, database_digest(path)


HINTS, PRISTINE = _demo()


def calls(hints: dict[str, list[Any]], tools: list[Any], field: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(*[st.builds(lambda a, n=t.name: {field: n, "params": a} if a is not None else {field: n},
                                 tool_args(t, hints)) for t in tools])


def bodies(hints: dict[str, list[Any]]) -> st.SearchStrategy[tuple[str, Any]]:
    """(route, body) pairs: well-formed calls of every tool, near misses, and anything at all."""
    query_call = calls(hints, QUERIES, "name") | st.fixed_dictionaries(
        {"query": st.sampled_from(["SELECT 1", "SELECT * FROM inventory", "SELECT $1"]) | st.text(max_size=60)},
        optional={"args": st.lists(scalars, max_size=3) | json_values})
    action_call = calls(hints, ACTIONS, "action")
    envelope = st.one_of(
        st.builds(lambda p: {"method": "query", "params": p}, query_call),
        st.builds(lambda p: {"method": "action", "params": p}, action_call),
        st.fixed_dictionaries({"method": json_values, "params": json_values}),
    )
    return st.one_of(
        st.tuples(st.just("/"), envelope),
        st.tuples(st.just("/query"), query_call),
        st.tuples(st.just("/action"), action_call),
        st.tuples(st.sampled_from(["/", "/query", "/action"]), query_call | action_call | envelope | json_values),
    )


def check_answer(status: int, payload: Any) -> None:
    event(f"status {status}")  # --hypothesis-show-statistics shows how the examples spread
    assert status in EXPECTED, (status, payload)
    assert isinstance(payload, dict) and isinstance(payload.get("success"), bool), payload
    if not payload["success"]:
        assert isinstance(payload["error"], str) and payload["error"]
        assert isinstance(payload["code"], str) and payload["code"]
        assert "Traceback" not in payload["error"]


@pytest.fixture
async def fuzz_server(make_server: ServerFactory) -> RunningServer:
    """One server per fuzz test (hypothesis reuses it for every example), with limits out of the way."""
    running: RunningServer = await make_server(NO_LIMITS)
    await running.create_key("reader", ("query",))
    await running.create_key("sql-reader", ("query", "sql"))
    await running.create_key("writer", ("query", "action"))
    await running.create_key("analyst", ("query", "action", "sql"))
    assert database_digest(running.bridge.paths.demo_db) == PRISTINE
    return running


@FUZZ
@given(request=bodies(HINTS), key=st.sampled_from(["reader", "sql-reader"]))
async def test_read_only_keys_never_change_data_whatever_they_send(fuzz_server: RunningServer,
                                                                  request: tuple[str, Any], key: str) -> None:
    path, body = request
    status, payload, _ = await fuzz_server.post(path, body, key=fuzz_server.keys[key])
    check_answer(status, payload)
    assert database_digest(fuzz_server.bridge.paths.demo_db) == PRISTINE


@FUZZ
@given(request=bodies(HINTS), key=st.sampled_from(["writer", "analyst"]))
async def test_writers_never_get_a_server_error_or_break_an_invariant(fuzz_server: RunningServer,
                                                                      request: tuple[str, Any], key: str) -> None:
    path, body = request
    status, payload, _ = await fuzz_server.post(path, body, key=fuzz_server.keys[key])
    check_answer(status, payload)
    conn = sqlite3.connect(fuzz_server.bridge.paths.demo_db)
    try:
        assert conn.execute("SELECT count(*) FROM inventory WHERE quantity < 0").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
                            "WHERE c.id IS NULL").fetchone() == (0,)
    finally:
        conn.close()


ROUTES = ["/", "/query", "/action", "/health", "/openapi.json", "/mcp"]
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@FUZZ
@given(path=st.sampled_from(ROUTES), method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
       body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
       content_type=st.sampled_from(["application/json", "text/plain", ""]) | HEADER_TEXT,
       key=st.sampled_from([None, "reader", "writer"]) | HEADER_TEXT)
async def test_raw_bytes_and_headers_never_crash_any_route(fuzz_server: RunningServer, path: str, method: str,
                                                           body: bytes, content_type: str,
                                                           key: str | None) -> None:
    headers = {"Content-Type": content_type, "Accept": "application/json, text/event-stream"}
    if key is not None:
        headers["x-api-key"] = fuzz_server.keys.get(key, key)
    async with fuzz_server.session.request(method, fuzz_server.url + path, data=body,
                                           headers=headers) as response:
        assert response.status < 500, (method, path, body[:100], response.status)
        text = await response.text()
        if response.content_type == "application/json" and text:
            json.loads(text)


TOOL_CALLS = st.one_of(*[st.builds(lambda a, n=t.name: {"name": n, "arguments": a}, tool_args(t, HINTS))
                         for t in CATALOG])
MCP_METHODS = st.sampled_from(["initialize", "tools/list", "tools/call", "server/discover", "ping",
                               "resources/list", "notifications/initialized"]) | st.text(max_size=20)
MCP_MESSAGE = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | json_values, "method": MCP_METHODS},
    optional={"id": st.integers(0, 2**31) | st.text(max_size=8) | json_values,
              "params": TOOL_CALLS | json_values})


@FUZZ
@given(body=MCP_MESSAGE | st.lists(MCP_MESSAGE, min_size=1, max_size=3) | json_values,
       version=st.sampled_from(MCP_VERSIONS))
async def test_mcp_messages_never_crash_and_readers_change_nothing(fuzz_server: RunningServer, body: Any,
                                                                   version: str | None) -> None:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "x-api-key": fuzz_server.keys["reader"]}
    if version:
        headers["MCP-Protocol-Version"] = version
    async with fuzz_server.session.post(fuzz_server.url + "/mcp", data=json.dumps(body),
                                        headers=headers) as response:
        text = await response.text()
        assert response.status < 500, (body, response.status, text)
        if response.content_type == "application/json" and text:
            json.loads(text)
    assert database_digest(fuzz_server.bridge.paths.demo_db) == PRISTINE
