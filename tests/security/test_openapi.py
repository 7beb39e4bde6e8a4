"""`/openapi.json` and schemathesis against it: the live server must answer every generated request, valid
or not, as its own document says (statuses, bodies, headers), and never with a server error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from server.bridge import Bridge
from server.config import Config
from server.host import ThreadedServerHost
from server.keys import KeyStore
from server.paths import Paths
from server.state import connect_state
from tests.conftest import RunningServer


@dataclass
class Live:
    url: str
    keys: dict[str, str]


@pytest.fixture
def live(home: Paths) -> Iterator[Live]:
    """A real server on its own thread and loop (schemathesis drives it with blocking calls)."""
    conn = connect_state(home.state_db)
    store = KeyStore(conn)
    keys = {name: store.create(name, scopes)[1] for name, scopes in (
        ("reader", ("query",)), ("writer", ("query", "action")), ("analyst", ("query", "action", "sql")))}
    conn.close()
    config = Config.model_validate({"server": {"port": 0},
                                    "rate_limit": {"requests": 1_000_000, "failed_auth_per_minute": 1_000_000}})
    host = ThreadedServerHost(Bridge(home, config,
                                     database_url="sqlite:///" + home.demo_db.as_posix().lstrip("/")))
    try:
        yield Live(host.start(), keys)
    finally:
        host.stop()
        host.close()


@pytest.fixture
def api_schema(live: Live) -> schemathesis.BaseSchema:
    """The document as the all-scopes key sees it: every tool, and raw SQL."""
    return schemathesis.openapi.from_url(live.url + "/openapi.json", headers={"x-api-key": live.keys["analyst"]},
                                         config=CONFIG)


# An over-long invalid body is refused as too large (413) before anyone reads it: a fine rejection.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 429]}}})


# Every operation the document lists, in both generation modes. The cases are drawn with hypothesis's own
# `@given` rather than schemathesis's pytest plugin, which reaches into pytest's private node attributes and
# broke with pytest 9.2: this test depends only on schemathesis's public strategy API.
OPERATIONS = [("POST", "/"), ("POST", "/query"), ("POST", "/action"), ("GET", "/health")]


def test_the_document_lists_exactly_the_operations_tested_here(api_schema: schemathesis.BaseSchema) -> None:
    listed = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


# /health takes no input, so it has no invalid request to generate.
CASES = [(m, p, mode) for m, p in OPERATIONS for mode in GenerationMode
         if mode is GenerationMode.POSITIVE or p != "/health"]


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_the_server_keeps_its_openapi_promises(api_schema: schemathesis.BaseSchema, live: Live,
                                                method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def call(case: schemathesis.Case) -> None:
        # A schema can say "a string of SQL" but not "SQL this database accepts": for raw SQL calls a 400
        # is a correct answer to schema-valid input. Every other check, and every other call, stays strict.
        excluded = [positive_data_acceptance] if _is_raw_sql(case.body) else []
        case.call_and_validate(base_url=live.url, headers={"x-api-key": live.keys["analyst"]},
                               excluded_checks=excluded)

    call()


def _is_raw_sql(body: object) -> bool:
    if isinstance(body, dict) and isinstance(body.get("params"), dict):
        body = body["params"]
    return isinstance(body, dict) and "query" in body


# ---- the document itself -------------------------------------------------------------------------
async def test_without_a_key_the_document_names_no_tools(server: RunningServer) -> None:
    status, doc, _ = await server.get("/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/", "/query", "/action", "/health"}
    text = str(doc)
    for tool in server.bridge.catalog:
        assert tool.name not in text, tool.name


async def test_with_a_key_the_document_lists_exactly_its_tools(server: RunningServer) -> None:
    _, doc, _ = await server.get("/openapi.json", key=server.keys["reader"])
    schemas = doc["components"]["schemas"]
    queries = {s["properties"]["name"]["const"] for s in schemas["QueryParams"]["oneOf"] if "properties" in s}
    assert queries == {t.name for t in server.bridge.catalog if t.kind == "query"}
    assert {"$ref": "#/components/schemas/SqlQuery"} not in schemas["QueryParams"]["oneOf"]  # no sql scope
    assert "const" not in str(schemas["ActionParams"])  # no action scope: no action names
    _, doc, _ = await server.get("/openapi.json", key=server.keys["analyst"])
    schemas = doc["components"]["schemas"]
    actions = {s["properties"]["action"]["const"] for s in schemas["ActionParams"]["oneOf"]}
    assert actions == {t.name for t in server.bridge.catalog if t.kind == "action"}
    assert {"$ref": "#/components/schemas/SqlQuery"} in schemas["QueryParams"]["oneOf"]


async def test_tool_parameter_schemas_are_the_ones_the_executor_enforces(server: RunningServer) -> None:
    _, doc, _ = await server.get("/openapi.json", key=server.keys["analyst"])
    published = {s["properties"]["name"]["const"]: s["properties"]["params"]
                 for s in doc["components"]["schemas"]["QueryParams"]["oneOf"] if "properties" in s
                 and "name" in s["properties"]}
    for name, params_schema in published.items():
        Draft202012Validator.check_schema(params_schema)
        assert params_schema == server.bridge.catalog.get(name).input_schema  # type: ignore[union-attr]
