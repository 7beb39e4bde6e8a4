"""The tool catalog (tools.toml): the queries and actions the owner allows, with typed parameters.

Each parameter list becomes one JSON Schema; the same schema validates REST calls and is published to MCP
clients, so there is exactly one definition of what a valid call looks like.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from server.config import ConfigError, describe_validation_error, read_toml
from server.ecma_regex import ecma_pattern, ecma_schema
from server.errors import InvalidParams
from server.sqlparams import named_params

TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")  # order.created
ENGINES = ("sqlite", "postgresql")
ParamType = Literal["string", "integer", "number", "boolean", "date", "json"]
_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
               "date": "string"}
_FORMATS = FormatChecker()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


_EXAMPLE = re.compile(r"\be\.g\.\s*([^\s,;)]+)")


def described_examples(text: str) -> list[str]:
    """The values a description shows after "e.g." ("Product id, e.g. JKT-BLU-M"), as a placeholder or a
    first call can use them."""
    return [value.rstrip(".") for value in _EXAMPLE.findall(text)]


class ParamSpec(_Model):
    type: ParamType
    description: str = ""
    required: bool = True
    default: Any = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=1)
    enum: list[Any] | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.pattern is not None:
            try:
                re.compile(ecma_pattern(self.pattern))
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if self.json_schema is not None and self.type != "json":
            raise ValueError("schema is only for parameters of type json")
        return self


SqlText = str | dict[Literal["sqlite", "postgresql", "default"], str]


class StepSpec(_Model):
    sql: SqlText
    fail_if_rows: str | None = None
    fail_if_none: str | None = None
    status: Literal[400, 404, 409, 422] = 409
    code: str = "rejected"


class ToolSpec(_Model):
    kind: Literal["query", "action"]
    description: str = Field(min_length=1)
    title: str = ""
    sql: SqlText | None = None
    steps: list[StepSpec] = Field(default_factory=list)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    max_rows: int | None = Field(None, ge=1)
    cache_ttl_seconds: float = Field(0, ge=0)
    destructive: bool = False
    idempotent: bool = False
    json_columns: list[str] = Field(default_factory=list)
    # Webhook events the action raises when it commits, e.g. ["order.created"] (server/webhooks/).
    events: list[str] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _shape(self) -> ToolSpec:
        for event in self.events:
            if not EVENT_NAME.match(event) or len(event) > 64:
                raise ValueError(f"event {event!r} must be lowercase words joined by dots, "
                                 "e.g. order.created")
        if self.events and self.kind != "action":
            raise ValueError("only actions raise events (a query changes nothing)")
        if self.kind == "query":
            if self.sql is None or self.steps:
                raise ValueError("a query needs `sql` (and no `steps`)")
        else:
            if (self.sql is None) == (not self.steps):
                raise ValueError("an action needs either `sql` or `steps`, not both")
            if self.cache_ttl_seconds:
                raise ValueError("actions cannot be cached")
        return self


class CatalogFile(_Model):
    tools: dict[str, ToolSpec] = Field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    sql: dict[str, str]  # engine -> SQL text; "default" serves every engine without its own
    fail_if_rows: str | None = None
    fail_if_none: str | None = None
    status: int = 409
    code: str = "rejected"

    def sql_for(self, engine: str) -> str:
        return self.sql.get(engine) or self.sql["default"]


@dataclass
class Tool:
    name: str
    kind: str
    title: str
    description: str
    params: dict[str, ParamSpec]
    steps: list[Step]
    max_rows: int | None
    cache_ttl_seconds: float
    destructive: bool
    idempotent: bool
    json_columns: list[str]
    input_schema: dict[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    _validator: Draft202012Validator | None = field(default=None, repr=False)
    _fast_check: Callable[[Any], Any] | None = field(default=None, repr=False)

    @property
    def read_only(self) -> bool:
        return self.kind == "query"

    def bind(self, args: Any) -> dict[str, Any]:
        """Validate caller arguments against the schema and return the values to bind, typed."""
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidParams(f"params for {self.name} must be a JSON object of named values")
        if not self._passes_fast_check(args):
            assert self._validator is not None
            errors = sorted(self._validator.iter_errors(args), key=lambda e: list(e.absolute_path))
            if errors:
                raise InvalidParams(f"{self.name}: " + "; ".join(_explain(self, e) for e in errors[:5]))
        bound: dict[str, Any] = {}
        for name, spec in self.params.items():
            value = args.get(name, spec.default)
            if spec.type == "date" and isinstance(value, str):
                value = dt.date.fromisoformat(value)
            bound[name] = value
        return bound

    def _passes_fast_check(self, args: dict[str, Any]) -> bool:
        """The compiled check says yes for a valid call in a few microseconds; anything else goes to the
        full validator, which has the last word and writes the message."""
        if self._fast_check is None:
            return False
        try:
            self._fast_check(args)
        except fastjsonschema.JsonSchemaException:
            return False
        return True


def _is_date(value: Any) -> bool:
    return _FORMATS.conforms(value, "date")


# Keywords fastjsonschema (drafts 4 to 7) reads exactly as jsonschema reads them in draft 2020-12. A schema
# with any other keyword (prefixItems, dependentRequired, unevaluatedProperties, ...) gets no fast check.
_FAST_KEYWORDS = frozenset({"type", "properties", "additionalProperties", "required", "items", "minItems",
                            "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
                            "exclusiveMaximum", "enum", "pattern", "format", "description", "title",
                            "default"})
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _fast_compatible(schema: Any) -> bool:
    """Whether the compiled check can only ever be stricter than jsonschema on this schema.

    Patterns: fastjsonschema reads every `$` as `\\Z` (end of text, not before a final newline), which is
    only stricter when the `$` ends the pattern; elsewhere (a lookahead) it could accept more. Enums: it
    compares with ==, so an enum of numbers would take `true` for 1; only text enums qualify."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= _FAST_KEYWORDS:
        return False
    pattern = schema.get("pattern")
    if pattern is not None and not (isinstance(pattern, str) and all(
            match.end() == len(pattern) for match in _UNESCAPED_DOLLAR.finditer(pattern))):
        return False
    if "format" in schema and schema["format"] != "date":
        return False
    if "enum" in schema and not all(isinstance(v, str) for v in schema["enum"]):
        return False
    children = [*schema.get("properties", {}).values(), schema.get("additionalProperties", True),
                schema.get("items", True)]
    return all(_fast_compatible(child) for child in children)


def fast_check(schema: dict[str, Any]) -> Callable[[Any], Any] | None:
    """The same JSON Schema compiled to plain Python by fastjsonschema, when every keyword in it means the
    same to both libraries (else None: the full validator does all the work). Dates are checked by
    jsonschema's own format rule."""
    if not _fast_compatible(schema):
        return None
    try:
        return fastjsonschema.compile(schema, formats={"date": _is_date}, use_default=False)
    except Exception:  # any schema it cannot compile just loses the fast path
        return None


_JSON_TYPE_NAMES = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
                    dict: "an object", type(None): "null"}


_BOUNDS = {"maxLength": "longer than {} characters", "minLength": "shorter than {} characters",
           "minimum": "less than the minimum of {}", "maximum": "greater than the maximum of {}",
           "exclusiveMinimum": "not above {}", "exclusiveMaximum": "not below {}",
           "minItems": "fewer than {} items", "maxItems": "more than {} items"}


def _kind(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "a value")


def _explain(tool: Tool, error: SchemaError) -> str:
    """Why a parameter was refused, never quoting the caller's value: a message that repeats input would
    have to mask any secret inside it, and a masked echo confirms a guess of that secret."""
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"missing required parameter '{missing}'"
    if error.validator == "additionalProperties" and not where:
        extra = len(set(error.instance) - set(tool.params))
        return (f"{extra} unknown parameter(s): this tool takes only "
                f"{', '.join(tool.params) or 'no parameters'}")
    if error.validator == "type":
        return f"{where or 'params'} must be of type {error.validator_value}, not {_kind(error.instance)}"
    if error.validator == "pattern":
        return f"{where} does not have the expected format"
    if error.validator == "format":
        return f"{where} is not a valid {error.validator_value} (use YYYY-MM-DD)"
    if error.validator == "enum":
        return f"{where} must be one of {', '.join(map(str, error.validator_value))}"
    if error.validator in _BOUNDS:
        return f"{where or 'params'}: {_BOUNDS[error.validator].format(error.validator_value)}"
    return f"{where or 'params'} is not valid for this tool (rule: {error.validator})"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def param_schema(spec: ParamSpec) -> dict[str, Any]:
    schema: dict[str, Any] = dict(spec.json_schema or {})
    if spec.type in _JSON_TYPES:
        schema["type"] = _JSON_TYPES[spec.type]
    if spec.type == "date":
        schema["format"] = "date"
    if spec.description:
        schema["description"] = spec.description
    if spec.pattern is not None:
        schema["pattern"] = spec.pattern
    if spec.min is not None:
        schema["minimum"] = _number(spec.min)
    if spec.max is not None:
        schema["maximum"] = _number(spec.max)
    if spec.type == "integer":  # what every database column (and the body parser) can hold
        schema.setdefault("minimum", -(2**63))
        schema.setdefault("maximum", 2**63 - 1)
    if spec.min_length is not None:
        schema["minLength"] = spec.min_length
    if spec.max_length is not None:
        schema["maxLength"] = spec.max_length
    if spec.enum is not None:
        schema["enum"] = spec.enum
    if spec.default is not None:
        schema["default"] = spec.default
    return schema


def _build_tool(name: str, spec: ToolSpec) -> Tool:
    raw_steps = spec.steps or [StepSpec(sql=spec.sql)]  # type: ignore[arg-type]
    steps = []
    for step in raw_steps:
        texts = {"default": step.sql} if isinstance(step.sql, str) else dict(step.sql)
        if "default" not in texts and not all(engine in texts for engine in ENGINES):
            raise ValueError("SQL given per engine must cover sqlite and postgresql (or give `default`)")
        steps.append(Step(texts, step.fail_if_rows, step.fail_if_none, step.status, step.code))
    used: set[str] = set()
    for step in steps:
        for text in step.sql.values():
            used.update(named_params(text))
    undeclared = sorted(used - set(spec.params))
    if undeclared:
        raise ValueError(f"SQL uses :{', :'.join(undeclared)} but no such parameter is declared")
    unused = sorted(set(spec.params) - used)
    if unused:
        raise ValueError(f"parameter(s) {', '.join(unused)} declared but never used in the SQL")
    properties = {pname: param_schema(p) for pname, p in spec.params.items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    required = [pname for pname, p in spec.params.items() if p.required and p.default is None]
    if required:
        schema["required"] = required
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"parameter schema is invalid: {exc.message}") from None
    return Tool(
        name=name, kind=spec.kind, title=spec.title or name.replace("_", " ").capitalize(),
        description=spec.description, params=spec.params, steps=steps, max_rows=spec.max_rows,
        cache_ttl_seconds=spec.cache_ttl_seconds, destructive=spec.destructive,
        idempotent=spec.idempotent, json_columns=spec.json_columns, input_schema=schema,
        events=tuple(dict.fromkeys(spec.events)),
        _validator=Draft202012Validator(ecma_schema(schema), format_checker=_FORMATS),
        _fast_check=fast_check(ecma_schema(schema)),
    )


class Catalog:
    """The loaded, validated catalog; replaced whole on reload so readers never see half an edit."""

    def __init__(self, tools: dict[str, Tool]) -> None:
        self.tools = tools

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "tools.toml") -> Catalog:
        try:
            parsed = CatalogFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(Path(source), exc)) from None
        tools: dict[str, Tool] = {}
        for name, spec in parsed.tools.items():
            if not TOOL_NAME.match(name):
                raise ConfigError(f"{source}: tools.{name}: a tool name must be lowercase letters, digits "
                                  "and _ and start with a letter")
            try:
                tools[name] = _build_tool(name, spec)
            except ValueError as exc:
                raise ConfigError(f"{source}: tools.{name}: {exc}") from None
        return cls(tools)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        return cls.from_dict(read_toml(path), str(path))
