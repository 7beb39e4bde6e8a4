"""The one database interface every route, tool and MCP call goes through.

Backends implement reads (always read-only, time-limited, row-capped) and write transactions; the tool
executor owns what a catalog step means, so that logic exists once for every engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Rows:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool = False
    changes: int = -1  # rows a write statement touched, where the engine says
    size: int = 0  # a lower bound of the rows' JSON in bytes, counted by reads given max_bytes


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

# The API key (its id) a request runs for, set by the tool executor: the backends count the connections
# each key holds against its share (`owner` of read/transaction, when not given).
call_owner: ContextVar[str | None] = ContextVar("voka_db_owner", default=None)


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
    async def read(self, sql: str, params: Params, *, max_rows: int, timeout: float, raw: bool = False,
                   max_bytes: int | None = None, owner: str | None = None) -> Rows:
        """Run one read-only statement, enforced by the engine; at most max_rows rows.

        `max_bytes`: refuse (ResponseTooLarge) an answer whose rows would take more than this as JSON,
        found while the rows arrive (server.db.budget). `owner` (an API key id; `call_owner` when not
        given): one owner holds at most a share of the connections at once, so its flood of slow
        statements leaves room for others."""

    @abstractmethod
    def transaction(self, *, timeout: float, owner: str | None = None
                    ) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: committed when the block ends normally, rolled back otherwise."""

    @abstractmethod
    async def check_sql(self, sql: str, *, writes: bool, timeout: float) -> str | None:
        """Have the database prepare catalog SQL (`:name` parameters) without running it, so a broken
        tool is found before Voka calls it. `writes`: it runs in an action's write transaction (else as
        a read, under the read-only rules). None when it prepares; otherwise the database's own message
        (`no such table: productz`), never containing a password. DatabaseUnavailable or QueryTimeout
        when the database cannot answer at all."""

    @abstractmethod
    async def schema(self) -> list[Table]: ...

    @abstractmethod
    def describe(self) -> str:
        """Where this database is, for people; never includes a password."""
