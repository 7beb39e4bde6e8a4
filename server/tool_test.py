"""'Test' in the Tools page: run a tool as edited (not yet saved) against the real database.

Queries run read-only with the usual row cap and time limit; actions run their steps inside a write
transaction that is always rolled back, so a test never changes the owner's data. The steps run through
the executor's own step logic, so a test behaves exactly like a real call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from server.bridge import Bridge
from server.catalog import Catalog, Tool
from server.db.base import Rows
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
