"""Catalog patterns mean what JSON Schema (ECMA-262) says, not what Python's `re` would read into them."""

from __future__ import annotations

import re
import tomllib

import pytest

from server.catalog import Catalog
from server.ecma_regex import ecma_pattern, ecma_schema
from server.errors import InvalidParams


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    (r"^[^@\s]+$", "a\x85b", True),        # NEL is no ECMA whitespace (Python's \s takes it)
    (r"^[^@\s]+$", "a\x1cb", True),
    (r"^[^@\s]+$", "a\u00a0b", False),     # NO-BREAK SPACE is ECMA whitespace
    (r"^\S+$", "a\u2028b", False),
    (r"^\S+$", "a\x85b", True),
    (r"^\d+$", "\u0661\u0662", False),     # Arabic-Indic digits are no ECMA \d
    (r"^\d+$", "12", True),
    (r"^\w+$", "\u00e9t\u00e9", False),
    (r"^[\w.]+$", "a.b_1", True),
    (r"^[]a]+$", "]a]", True),
    (r"^[^]a]+$", "bc", True),
    (r"(?i)^ab\s$", "AB ", True),
])
def test_patterns_read_as_ecma(pattern: str, text: str, matches: bool) -> None:
    assert bool(re.search(ecma_pattern(pattern), text)) is matches


def test_nested_schemas_are_rewritten_and_the_original_is_untouched() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": r"\d"}},
              "items": [{"pattern": r"\s"}]}
    rewritten = ecma_schema(schema)
    assert rewritten["properties"]["a"]["pattern"] == r"(?a)\d"
    assert rewritten["items"][0]["pattern"].startswith("(?a)[")
    assert schema["properties"]["a"]["pattern"] == r"\d"


CATALOG = '''
[tools.add_contact]
kind = "action"
description = "Add a contact"
sql = "INSERT INTO contacts (email) VALUES (:email)"
[tools.add_contact.params.email]
type = "string"
pattern = '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$'
'''


def test_the_tool_accepts_what_its_published_schema_allows() -> None:
    tool = Catalog.from_dict(tomllib.loads(CATALOG)).get("add_contact")
    assert tool is not None
    assert tool.input_schema["properties"]["email"]["pattern"] == r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    tool.bind({"email": "a\x85b@shop.example"})
    with pytest.raises(InvalidParams):
        tool.bind({"email": "a\u00a0b@shop.example"})
