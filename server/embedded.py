"""The server as the desktop app embeds it: one ThreadedServerHost whose Bridge is rebuilt from the home
folder on every start, so a settings change applies with Stop/Start and no new process.

Everything slow (files, keyring, sockets, the database) runs on the server thread; the caller gets
concurrent futures back and never waits. Events from whichever Bridge is current reach the listeners
given to `listen()`, on the server thread (listeners must only queue them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from server import keyadmin
from server.bridge import Bridge
from server.config import Config, ConfigError, load_config
from server.events import ServerStateChanged
from server.host import ServerHost, ThreadedServerHost
from server.keys import Principal
from server.launch import first_run_keys, prepare
from server.logs import setup_logging
from server.paths import Paths, resolve_paths
from server.state import connect_state
from server.tunnel.control import TunnelControl

log = logging.getLogger(__name__)
T = TypeVar("T")
Listener = Callable[[Any], None]


def describe_start_error(exc: BaseException, port: int) -> str:
    """A start failure in words an owner can act on."""
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            return (f"Port {port} is already in use by another program. Choose another port in "
                    "Settings, or close the other program.")
        if exc.errno in (13, 10013):
            return f"This user may not listen on port {port}; choose a port above 1024 in Settings."
        return f"The server could not listen: {exc.strerror or exc}"
    log.exception("unexpected start failure", exc_info=exc)
    return f"The server could not start ({type(exc).__name__}); the log folder has the details."


class EmbeddedServer:
    def __init__(self, home: str | None = None, port: int | None = None) -> None:
        self.home = home
        self.paths: Paths = resolve_paths(home)
        self.port_override = port
        self.first_run = not self.paths.config_file.exists()
        self.static_keys: list[tuple[str, Principal]] = []
        self.first_key: str | None = None
        self.boot_error = ""
        self._keys_prepared = False
        self._listeners: list[Listener] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.state = "stopped"
        self.url: str | None = None
        self.last_failure = ""
        try:
            config, url = self._load()
            # Create state.sqlite3 once, before the worker threads that open it run side by side.
            connect_state(self.paths.state_db).close()
        except ConfigError as exc:
            self.boot_error = str(exc)
            config, url = Config(), ""
        self.threaded = ThreadedServerHost(Bridge(self.paths, config, database_url=url))
        self._attach(self.threaded.host.bridge)

    # ---- plumbing ------------------------------------------------------------------------------
    @property
    def bridge(self) -> Bridge:
        return self.threaded.host.bridge

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.threaded.loop

    @property
    def tunnel(self) -> TunnelControl:
        """The managed tunnel: start(provider, domain), stop(), status(), set_secret(provider, secret)…
        (server/tunnel/control.py); its news arrives as TunnelChanged events through listen()."""
        return self.threaded.tunnel

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _forward(self, event: Any) -> None:
        if isinstance(event, ServerStateChanged):
            self.state = event.state
            if event.state == "serving":
                self.url = event.url
        for listener in list(self._listeners):
            listener(event)

    def _attach(self, bridge: Bridge) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = bridge.events.subscribe(self._forward)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return self.threaded.submit(coro)

    def run_blocking(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run a blocking call (keyring, files, sqlite3) on a worker thread; never on the caller's."""
        async def call() -> T:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

        return self.submit(call())

    # ---- configuration -------------------------------------------------------------------------
    def _load(self) -> tuple[Config, str]:
        configured = load_config(self.paths.config_file)
        config, url = prepare(self.paths, None, demo=not configured.database.url)
        if self.port_override is not None:
            config.server.port = self.port_override
        return config, url

    def _prepare(self) -> tuple[Config, str]:
        config, url = self._load()
        setup_logging(self.paths.log_dir, config.logging)
        if not self._keys_prepared:
            self.static_keys, first = first_run_keys(self.paths)
            if first is not None:
                keyadmin.remember(*first)  # without a keyring, the app can still show it this run
                self.first_key = first[1]
            self._keys_prepared = True
        return config, url

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Future[str]:
        return self.submit(self._start())

    def stop(self) -> Future[None]:
        return self.submit(self._stop())

    def restart(self) -> Future[str]:
        async def both() -> str:
            await self._stop()
            return await self._start()

        return self.submit(both())

    async def _start(self) -> str:
        if self.state in ("serving", "starting"):
            return self.url or ""
        self._forward(ServerStateChanged("starting"))
        port = self.port_override if self.port_override is not None else 0
        try:
            config, url = await asyncio.get_running_loop().run_in_executor(None, self._prepare)
            port = config.server.port
            bridge = Bridge(self.paths, config, database_url=url, static_keys=self.static_keys)
            self._attach(bridge)
            self.threaded.host = ServerHost(bridge)
            served = await self.threaded.host.start()
        except Exception as exc:
            self.last_failure = describe_start_error(exc, port)
            log.error("server failed to start", extra={"fields": {"error": self.last_failure}})
            self._forward(ServerStateChanged("failed", detail=self.last_failure))
            raise
        self.last_failure = ""
        return served

    async def _stop(self) -> None:
        if self.state not in ("serving", "starting"):
            return
        await self.threaded.host.stop()

    def close(self, timeout: float = 30) -> None:
        """Stop serving (in-flight requests finish) and end the server thread."""
        if self.threaded.loop.is_running():
            try:
                self.stop().result(timeout)
                self.submit(self._finish_tasks(timeout)).result(timeout + 5)
            finally:
                self.threaded.close()

    @staticmethod
    async def _finish_tasks(timeout: float) -> None:
        """Let background calls still running (a keyring read, a file write) end before the loop does."""
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        await asyncio.get_running_loop().shutdown_default_executor()
