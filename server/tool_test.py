"""'Test' in the Tools page: run a tool as edited (not yet saved) against the real database.

Queries run read-only with the usual row cap and time limit; actions run their steps inside a write
transaction that is always rolled back, so a test never changes the owner's data. The steps run through
the executor's own step logic, so a test behaves exactly like a real call.

Checking a tool (on Save in the app, and in `voka-bridge check`) goes further without running anything:
the database prepares each statement, so SQL that Voka would only see fail (a typo, a missing table) is
named with the database's own message before the tool goes live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from server.bridge import Bridge
from server.catalog import Catalog, Tool
from server.db.base import Database, Rows
from server.executor import ToolExecutor


class _RollBack(Exception):
    """Raised inside the transaction so the backend rolls back what the test did."""


@dataclass(frozen=True)
class TryResult:
    data: Any
    rows: int
    elapsed_ms: float
    rolled_back: bool
    truncated: bool = False


@dataclass(frozen=True)
class SqlProblem:
    """One statement of a tool that the database does not accept, in the database's own words."""

    tool: str
    step: int | None  # the step's number in a multi-step action; None for a tool of one statement
    message: str

    def __str__(self) -> str:
        return self.message if self.step is None else f"step {self.step}: {self.message}"


def tool_from_spec(name: str, spec: dict[str, Any]) -> Tool:
    """Validate an edited tool on its own (ConfigError names what is wrong)."""
    tool = Catalog.from_dict({"tools": {name: spec}}, "tools.toml").get(name)
    assert tool is not None
    return tool


async def try_tool(bridge: Bridge, tool: Tool, args: dict[str, Any]) -> TryResult:
    bound = tool.bind(args)
    limits = bridge.config.limits
    db = await bridge.database()
    started = time.perf_counter()
    if tool.kind == "query":
        max_rows = min(tool.max_rows or limits.max_rows, limits.max_rows)
        result = await db.read(tool.steps[0].sql_for(db.engine), bound, max_rows=max_rows,
                               timeout=limits.query_timeout_seconds)
        return TryResult(result.rows, len(result.rows), (time.perf_counter() - started) * 1000, False,
                         result.truncated)
    last = Rows([], [])
    try:
        async with db.transaction(timeout=limits.query_timeout_seconds) as tx:
            for step in tool.steps:
                last = await ToolExecutor.run_step(tx, step, db.engine, bound)
            raise _RollBack
    except _RollBack:
        pass
    elapsed = (time.perf_counter() - started) * 1000
    data: Any = last.rows[0] if last.rows else {"changes": max(last.changes, 0)}
    return TryResult(data, len(last.rows) or max(last.changes, 0), elapsed, True)


async def check_tool(db: Database, tool: Tool, *, timeout: float) -> list[SqlProblem]:
    """Prepare each statement of the tool as it will run (an action's steps for writing, a query under
    the read-only rules), running none of them."""
    problems = []
    for number, step in enumerate(tool.steps, start=1):
        message = await db.check_sql(step.sql_for(db.engine), writes=tool.kind == "action", timeout=timeout)
        if message is not None:
            problems.append(SqlProblem(tool.name, number if len(tool.steps) > 1 else None, message))
    return problems


async def check_catalog(db: Database, catalog: Catalog, *, timeout: float) -> list[SqlProblem]:
    """Every tool's statements, prepared one by one (`voka-bridge check`)."""
    problems = []
    for tool in catalog:
        problems += await check_tool(db, tool, timeout=timeout)
    return problems


async def check_live_tool(bridge: Bridge, tool: Tool) -> list[SqlProblem]:
    """A tool as edited, prepared on the running server's database (the app's Save)."""
    db = await bridge.database()
    return await check_tool(db, tool, timeout=bridge.config.limits.query_timeout_seconds)
