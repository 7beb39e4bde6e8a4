"""Which asyncio event loop the server runs on.

uvloop (libuv) where it exists, Linux and macOS: the same server code answers about 15% more MCP calls and
60% more PostgreSQL lookups per second on it (asyncpg is written for it; bench/ figures in the README).
Windows has no uvloop and keeps asyncio's own loop, as does anyone who sets VOKA_EVENT_LOOP=asyncio (for
example to rule the loop out when chasing a problem). Nothing else in the server depends on which one runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

ENV_VAR = "VOKA_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory for new server loops, as VOKA_EVENT_LOOP asks (default `auto`: uvloop when installed)."""
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        log.warning("%s=%r is not one of %s; using auto", ENV_VAR, choice, ", ".join(CHOICES))
        choice = "auto"
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            log.warning("%s=uvloop but uvloop is not installed on this platform; using asyncio's loop",
                        ENV_VAR)
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def running() -> str:
    """Which loop runs this code, `uvloop` or `asyncio`: the server's "listening" log line says it."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop for a server thread (the desktop app's), of the kind `loop_factory` picks."""
    return loop_factory()()


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the chosen loop: how `serve` and each worker process run the server."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
