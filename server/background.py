"""Background tasks of the server (audit writer, probes, watchdogs): one way to stop them."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_task(task: asyncio.Task[object] | None) -> None:
    """Cancel a background task and wait until it has finished (its own cancellation is not an error)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
