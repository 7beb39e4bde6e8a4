"""The one database interface every route, tool and MCP call goes through.

Backends implement reads (always read-only, time-limited, row-capped) and write transactions; the tool
executor owns what a catalog step means, so that logic exists once for every engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Rows:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool = False
    changes: int = -1  # rows a write statement touched, where the engine says


@dataclass
class Column:
    name: str
    type: str
    nullable: bool
    primary_key: bool = False


@dataclass
class Table:
    name: str
    columns: list[Column] = field(default_factory=list)
    row_count: int | None = None


Params = dict[str, Any] | list[Any]


class Transaction(Protocol):
    async def execute(self, sql: str, params: dict[str, Any]) -> Rows:
        """Run one statement inside the open transaction; rows it returns (RETURNING or SELECT)."""


class Database(ABC):
    """A connection to the owner's database.

    `read` takes catalog SQL with `:name` parameters (a dict) or raw SQL with `$1` parameters (a list).
    """

    engine: str

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """One real round trip; raises DatabaseUnavailable when it fails."""

    @abstractmethod
    async def read(self, sql: str, params: Params, *, max_rows: int, timeout: float,
                   raw: bool = False) -> Rows:
        """Run one read-only statement, enforced by the engine; at most max_rows rows."""

    @abstractmethod
    def transaction(self, *, timeout: float) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: committed when the block ends normally, rolled back otherwise."""

    @abstractmethod
    async def schema(self) -> list[Table]: ...

    @abstractmethod
    def describe(self) -> str:
        """Where this database is, for people; never includes a password."""
