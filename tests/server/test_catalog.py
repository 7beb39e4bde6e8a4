"""tools.toml: loading, refusing broken catalogs with file/tool/reason, schemas and argument binding."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from server.bundled import bundled_text
from server.catalog import Catalog
from server.config import ConfigError
from server.errors import InvalidParams
from server.sqlparams import named_params, to_numbered


def load(tmp_path: Path, text: str) -> Catalog:
    path = tmp_path / "tools.toml"
    path.write_text(text)
    return Catalog.load(path)


def test_default_catalog_has_the_five_demo_tools(tmp_path: Path) -> None:
    catalog = load(tmp_path, bundled_text("tools.toml"))
    assert {t.name: t.kind for t in catalog} == {
        "find_customer_by_phone": "query", "check_inventory": "query", "get_order_status": "query",
        "create_customer": "action", "create_order": "action"}
    schema = catalog.get("create_customer").input_schema
    assert schema["required"] == ["name", "phone"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["phone"]["pattern"] == r"^\+?[0-9]{7,15}$"
    assert catalog.get("get_order_status").input_schema["properties"]["order_id"] == {
        "type": "integer", "description": "Order number", "minimum": 1, "maximum": 2**63 - 1}


BROKEN = [
    ("[tools.x]\nkind = 'query'\ndescription = 'd'\n", "tools.x", "needs `sql`"),
    ("[tools.x]\nkind = 'delete'\ndescription = 'd'\nsql = 'SELECT 1'\n", "tools.x.kind", "query"),
    ("[tools.x]\nkind = 'query'\ndescription = 'd'\nsql = 'SELECT :a'\n", "tools.x", ":a"),
    ("[tools.x]\nkind = 'query'\ndescription = 'd'\nsql = 'SELECT 1'\n[tools.x.params.a]\ntype = 'string'\n",
     "tools.x", "never used"),
    ("[tools.x]\nkind = 'query'\ndescription = 'd'\nsql = 'SELECT :a'\n[tools.x.params.a]\ntype = 'text'\n",
     "tools.x.params.a.type", "string"),
    ("[tools.x]\nkind = 'query'\ndescription = 'd'\nsql = 'SELECT :a'\n[tools.x.params.a]\n"
     "type = 'string'\npattern = '('\n", "tools.x.params.a", "regular expression"),
    ("[tools.X-Y]\nkind = 'query'\ndescription = 'd'\nsql = 'SELECT 1'\n", "tools.X-Y", "lowercase"),
    ("[tools.x]\nkind = 'query'\ndescription = 'd'\nsql = 'SELECT 1'\nmax_rowz = 3\n", "tools.x.max_rowz",
     "unknown key"),
    ("[tools.x]\nkind = 'action'\ndescription = 'd'\ncache_ttl_seconds = 5\nsql = 'DELETE FROM t'\n", "tools.x",
     "cached"),
    ("[tools.x]\nkind = 'query'\ndescription = 'd'\nsql = { sqlite = 'SELECT 1' }\n", "tools.x",
     "postgresql"),
    ("[tools.x\nkind = 'query'\n", "tools.toml", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "where", "why"), BROKEN)
def test_broken_catalog_names_file_tool_and_reason(tmp_path: Path, text: str, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert str(tmp_path / "tools.toml") in message
    assert where in message and why in message


def test_bind_validates_types_and_fills_optionals(tmp_path: Path) -> None:
    catalog = load(tmp_path, """
[tools.t]
kind = "query"
description = "d"
sql = "SELECT :day, :n, :flag, :mode, :note"
[tools.t.params.day]
type = "date"
[tools.t.params.n]
type = "number"
max = 10
[tools.t.params.flag]
type = "boolean"
required = false
default = true
[tools.t.params.mode]
type = "string"
enum = ["a", "b"]
[tools.t.params.note]
type = "string"
required = false
max_length = 3
""")
    tool = catalog.get("t")
    assert tool.bind({"day": "2026-11-25", "n": 2.5, "mode": "a"}) == {
        "day": dt.date(2026, 11, 25), "n": 2.5, "flag": True, "mode": "a", "note": None}
    for bad, fragment in [({"day": "25/11/2026", "n": 1, "mode": "a"}, "YYYY-MM-DD"),
                          ({"day": "2026-11-25", "n": 11, "mode": "a"}, "maximum"),
                          ({"day": "2026-11-25", "n": True, "mode": "a"}, "number"),
                          ({"day": "2026-11-25", "n": 1, "mode": "c"}, "one of a, b"),
                          ({"day": "2026-11-25", "n": 1, "mode": "a", "note": "long"}, "long"),
                          ({"n": 1, "mode": "a"}, "missing required parameter 'day'")]:
        with pytest.raises(InvalidParams) as caught:
            tool.bind(bad)
        assert fragment in caught.value.message


def test_sql_parameter_scanner_skips_literals_and_casts() -> None:
    sql = "SELECT ':fake', a::text, \"col:x\" FROM t WHERE b = :b AND c = :c -- :comment\n AND d = :b"
    assert named_params(sql) == ["b", "c"]
    rewritten, order = to_numbered(sql)
    assert order == ["b", "c"]
    assert rewritten.endswith("WHERE b = $1 AND c = $2 -- :comment\n AND d = $1")
    assert "a::text" in rewritten and "':fake'" in rewritten


_TRICKY = [None, True, False, 0, 1, 1.0, 1.5, -1, 2**63 - 1, -(2**63), "", " ", "x", "+15551234567",
           "+1555123456\n", "١٢٣٤٥٦٧٨", "2025-06-05", "2025-02-30", "2025-13-01", "20250605", "a@b.co",
           "a" * 300, [], [{}], [{"product_id": "P1", "quantity": 1}],
           [{"product_id": "P1", "quantity": 1.0}], [{"product_id": "P1", "quantity": True}],
           [{"product_id": "P1", "quantity": 1, "x": 1}], {"product_id": "P1"}]


def test_fast_check_never_accepts_what_the_full_validator_refuses(tmp_path: Path) -> None:
    """The compiled fast path only ever says yes to calls jsonschema also accepts (it has the last word)."""
    catalog = Catalog.from_dict(tomllib.loads(bundled_text("tools.toml")))
    checked = agreed_valid = 0
    for tool in catalog:
        assert tool._fast_check is not None, tool.name
        full = Draft202012Validator(tool.input_schema, format_checker=FormatChecker())
        for name in tool.params:
            for value in _TRICKY:
                args = {name: value}
                checked += 1
                if tool._passes_fast_check(args):
                    assert full.is_valid(args), (tool.name, args)
                    agreed_valid += 1
        assert not tool._passes_fast_check({"unknown": 1})
    assert checked > 100 and agreed_valid > 5


def test_fast_check_lets_valid_calls_skip_the_full_validator(tmp_path: Path) -> None:
    catalog = Catalog.from_dict(tomllib.loads(bundled_text("tools.toml")))
    tool = catalog.get("find_customer_by_phone")
    assert tool is not None
    assert tool._passes_fast_check({"phone": "+15558594448"})
    assert not tool._passes_fast_check({"phone": "555 CALL NOW"})
    with pytest.raises(InvalidParams, match="does not have the expected format"):
        tool.bind({"phone": "555 CALL NOW"})


@pytest.mark.parametrize(("schema", "value"), [
    ({"type": "array", "prefixItems": [{"type": "string"}]}, [1]),
    ({"type": "object", "dependentRequired": {"a": ["b"]}}, {"a": 1}),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "unevaluatedProperties": False}, {"b": 1}),
    ({"type": "array", "contains": {"type": "string"}, "minContains": 2}, ["x"]),
    ({"type": "string", "pattern": "^a(?!$)"}, "a\n"),
    ({"enum": [1, 2]}, True),
    ({"type": "string", "format": "email"}, "x"),
])
def test_no_fast_check_where_the_two_validators_could_disagree(tmp_path: Path, schema: dict,
                                                                value: object) -> None:
    """An owner's `json` parameter may use any draft 2020-12 keyword; the fast path steps aside for them."""
    catalog = Catalog.from_dict({"tools": {"t": {
        "kind": "query", "description": "d", "sql": "SELECT :v AS v",
        "params": {"v": {"type": "json", "required": True, "schema": schema}}}}})
    tool = catalog.get("t")
    assert tool is not None and tool._fast_check is None
    full = Draft202012Validator(tool.input_schema, format_checker=FormatChecker())
    assert not full.is_valid({"v": value})
    with pytest.raises(InvalidParams):
        tool.bind({"v": value})


def test_a_pattern_ending_in_dollar_keeps_the_fast_check_and_the_full_verdict(tmp_path: Path) -> None:
    """fastjsonschema reads that `$` as end of text; a value with a final newline falls to jsonschema,
    which keeps accepting it as it always did."""
    catalog = Catalog.from_dict(tomllib.loads(bundled_text("tools.toml")))
    tool = catalog.get("find_customer_by_phone")
    assert tool is not None and tool._fast_check is not None
    assert not tool._passes_fast_check({"phone": "+15558594448\n"})
    assert tool.bind({"phone": "+15558594448\n"}) == {"phone": "+15558594448\n"}


def test_refusals_never_quote_the_callers_value() -> None:
    """A message that repeats input must mask a secret inside it, and a masked echo confirms a guess."""
    catalog = Catalog.from_dict(tomllib.loads(Path("resources/tools.toml").read_text()))
    tool = catalog.get("create_customer")
    assert tool is not None
    secret_guess = "xshopsecretx"
    for params in ({"name": secret_guess, "phone": secret_guess}, {"name": 123, "phone": "+15551234567"},
                   {"name": secret_guess * 30, "phone": "+15551234567"},
                   {"name": "A", "phone": "+15551234567", "email": secret_guess},
                   {"name": "A", "phone": "+15551234567", secret_guess: 1}):
        with pytest.raises(InvalidParams) as refused:
            tool.bind(params)
        assert secret_guess[1:-1] not in refused.value.message and "***" not in refused.value.message
    order = catalog.get("create_order")
    assert order is not None
    for items in ([], [{"product_id": secret_guess, "quantity": 0}], [{"product_id": "x" * 99, "quantity": 1}]):
        with pytest.raises(InvalidParams) as refused:
            order.bind({"customer_id": 1, "items": items})
        assert "x" * 20 not in refused.value.message and secret_guess[1:-1] not in refused.value.message
