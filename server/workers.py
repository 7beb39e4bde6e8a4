"""`voka-bridge serve --workers N`: one supervisor process and N worker processes serving one socket.

One Python process tops out at about one core; a small server box has two or more. The supervisor binds
the listening socket(s) (see `bind`) and starts N workers (multiprocessing "spawn": fresh interpreters,
no forked threads or loops). Each worker builds its Bridge and app exactly as `serve` does and accepts on
the socket it inherits. What must hold for the whole server is shared: rate limits, failed-auth counts and the
query cache's write counter in shared memory (server/sharedstate.py); handshake-era MCP sessions, keys and
the audit log in state.sqlite3. Everything a worker needs travels as Process arguments over the spawn
pipe, never in argv or the environment (it includes secrets). The supervisor rotates the log files (the
workers only append), replaces a worker that dies, and on SIGTERM/SIGINT stops them all gracefully.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from server import eventloop
from server.bridge import Bridge
from server.config import Config, ConfigError
from server.host import ServerHost
from server.keys import Principal
from server.logs import rotate_logs, setup_logging
from server.paths import Paths
from server.sharedstate import Cluster, SharedState
from server.state import connect_state

log = logging.getLogger(__name__)

BACKLOG = 128  # as aiohttp's own sites
READY_TIMEOUT = 60.0
MAX_RESTARTS = 5  # replacements within RESTART_WINDOW; past that the server gives up (exit non-zero)
RESTART_WINDOW = 60.0
ROTATE_EVERY = 1.0
_SECRET_ENVIRONMENT = ("MCP_API_KEY", "DATABASE_URL")


class WorkersFailed(Exception):
    """The workers could not start, or kept dying; the message says why."""


@dataclass
class Plan:
    """What every worker needs to build the same Bridge `serve` builds (pickled to it, never in argv)."""

    paths: Paths
    config: Config
    database_url: str
    static_keys: list[tuple[str, Principal]]
    workers: int


def bind(config: Config, count: int) -> list[list[socket.socket]]:
    """The listening sockets of each of `count` workers: like aiohttp's TCPSite, one on every address
    [server] host resolves to (`localhost` is 127.0.0.1 and ::1 on macOS; an empty host is every
    interface), all on [server] port (port 0: one free port, chosen on the first address).

    On Linux each worker gets sockets of its own on the same port (SO_REUSEPORT), so the kernel spreads
    new connections evenly: with one shared socket the worker that wakes first accepts a whole burst (32
    connections opened at once went 32/0 or 27/5), and a client that keeps its connections leaves one
    core idle. Elsewhere (macOS does not spread them) the workers share one set of sockets.
    """
    spread = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    port = config.server.port
    found = socket.getaddrinfo(config.server.host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in found))
    socks: list[list[socket.socket]] = [[] for _ in range(count if spread else 1)]
    try:
        for family, address in addresses:
            address = (address[0], port, *address[2:])
            if spread:  # a plain bind first: a server already on the port is an error, not a silent partner
                socket.create_server(address, family=family).close()
            for own in socks:
                own.append(socket.create_server(address, family=family, backlog=BACKLOG, reuse_port=spread))
                port = own[-1].getsockname()[1]  # the port chosen for port 0, then kept for the rest
                address = (address[0], port, *address[2:])
    except OSError:
        for own in socks:
            for sock in own:
                sock.close()
        raise
    for own in socks:
        for sock in own:
            sock.setblocking(False)
    return socks if spread else socks * count


# ---- a worker process ----------------------------------------------------------------------------
def _worker(plan: Plan, index: int, socks: list[socket.socket], shared: SharedState,
            pipe: Connection) -> None:
    """A worker's entry point (runs in the spawned process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the supervisor decides
    setup_logging(plan.paths.log_dir, plan.config.logging, console=True, rotate=False)
    bridge = Bridge(plan.paths, plan.config, database_url=plan.database_url, static_keys=plan.static_keys,
                    cluster=Cluster(shared, index, plan.workers))
    try:
        code = eventloop.run(_serve(bridge, socks, pipe))
    finally:
        shared.close()
    sys.exit(code)


async def _serve(bridge: Bridge, socks: list[socket.socket], pipe: Connection) -> int:
    host = ServerHost(bridge, socks)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await host.start()
    except (ConfigError, OSError) as exc:
        pipe.send(("failed", str(exc)))
        return 1

    def orphaned() -> None:  # the pipe turns readable only at EOF: the supervisor is gone, so stop too
        loop.remove_reader(pipe.fileno())
        stop.set()

    loop.add_reader(pipe.fileno(), orphaned)
    pipe.send(("ready", os.getpid()))
    index = bridge.cluster.index if bridge.cluster else 0
    log.info("worker ready", extra={"fields": {"worker": index, "pid": os.getpid()}})
    try:
        await stop.wait()
    finally:
        await host.stop()
    return 0


# ---- the supervisor ------------------------------------------------------------------------------
@dataclass
class _Worker:
    index: int
    process: BaseProcess
    pipe: Connection | None
    ready: bool = False


class Supervisor:
    """Starts, watches and stops the workers (all of it on the main thread of the parent process)."""

    def __init__(self, plan: Plan, socks: list[list[socket.socket]], shared: SharedState) -> None:
        self.plan = plan
        self.socks = socks  # worker i serves socks[i]; a replacement gets the same ones
        self.shared = shared
        self.context = get_context("spawn")
        self.workers: dict[int, _Worker] = {}
        self._restarts: deque[float] = deque()
        self._stop_requested = False

    def start_worker(self, index: int) -> None:
        here, there = self.context.Pipe()
        process = self.context.Process(target=_worker, name=f"voka-worker-{index}",
                                       args=(self.plan, index, self.socks[index], self.shared, there))
        process.start()
        there.close()
        self.workers[index] = _Worker(index, process, here)

    def run(self, announce: Callable[[], None]) -> int:
        """Serve until SIGTERM/SIGINT (0), or until the workers cannot start or keep dying (WorkersFailed)."""
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        old_wakeup = signal.set_wakeup_fd(wake_write.fileno())
        try:
            for index in range(self.plan.workers):
                self.start_worker(index)
            self._watch(announce, wake_read)
        finally:
            self.stop()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wake_read.close()
            wake_write.close()
        return 0

    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stop_requested = True

    def _watch(self, announce: Callable[[], None], wake: socket.socket) -> None:
        announced = False
        deadline = time.monotonic() + READY_TIMEOUT
        next_rotation = 0.0
        while not self._stop_requested:
            waitables: list[Any] = [wake]
            for worker in self.workers.values():
                waitables.append(worker.process.sentinel)
                if worker.pipe is not None:
                    waitables.append(worker.pipe)
            ready = wait(waitables, timeout=ROTATE_EVERY)
            if wake in ready:
                while True:
                    try:
                        wake.recv(64)
                    except BlockingIOError:
                        break
            for worker in list(self.workers.values()):
                self._check(worker, ready, announced)
            if not announced:
                if all(w.ready for w in self.workers.values()):
                    announce()
                    announced = True
                elif time.monotonic() > deadline:
                    raise WorkersFailed(f"the workers did not start within {READY_TIMEOUT:g} s")
            if time.monotonic() >= next_rotation:
                next_rotation = time.monotonic() + ROTATE_EVERY
                try:
                    rotate_logs(self.plan.paths.log_dir, self.plan.config.logging)
                except OSError:
                    log.exception("rotating the log files failed")

    def _check(self, worker: _Worker, ready: list[Any], announced: bool) -> None:
        if worker.pipe is not None and worker.pipe in ready:
            try:
                message = worker.pipe.recv()
            except EOFError:  # the worker is gone; its sentinel says so too
                worker.pipe.close()
                worker.pipe = None
            else:
                if message[0] == "ready":
                    worker.ready = True
                elif message[0] == "failed":
                    if not announced:
                        raise WorkersFailed(str(message[1]))
                    log.error("a replacement worker could not start",  # it exits; bounded restarts follow
                              extra={"fields": {"worker": worker.index, "error": str(message[1])}})
        if worker.process.sentinel not in ready or self._stop_requested:
            return
        worker.process.join()
        code = worker.process.exitcode
        if not announced:
            raise WorkersFailed(f"worker {worker.index} exited with code {code} while starting")
        log.error("worker exited unexpectedly; starting a replacement",
                  extra={"fields": {"worker": worker.index, "pid": worker.process.pid, "exitcode": code}})
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) > MAX_RESTARTS:
            raise WorkersFailed(f"workers died {len(self._restarts)} times within {RESTART_WINDOW:g} s; "
                                "giving up (see error.log)")
        self._free_lock(worker.process.pid)
        self.start_worker(worker.index)

    def _free_lock(self, pid: int | None) -> None:
        """A worker killed inside the shared lock's few microseconds would stall every other worker, so
        the lock is released when the segment names the dead worker as its holder (and only then: a
        live worker that is merely slow keeps it)."""
        if pid is not None and self.shared.guard.release_if_held_by(pid):
            log.error("the shared lock was held by the worker that died; released",
                      extra={"fields": {"pid": pid}})

    def stop(self) -> None:
        """SIGTERM every worker (each finishes its in-flight requests), then wait for them."""
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: the worker's graceful stop
        grace = self.plan.config.server.shutdown_timeout_seconds + 15
        deadline = time.monotonic() + grace
        for worker in self.workers.values():
            worker.process.join(max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("worker did not stop in time; killed", extra={"fields": {"worker": worker.index}})
                worker.process.kill()
                worker.process.join(5)
            if worker.pipe is not None:
                worker.pipe.close()
                worker.pipe = None


def serve_workers(plan: Plan, announce: Callable[[int], None]) -> int:
    """Bind, start the workers, call `announce(port)` once all of them are ready, serve until stopped."""
    for name in _SECRET_ENVIRONMENT:  # read already; the workers get them as arguments, not inherited
        os.environ.pop(name, None)
    conn = connect_state(plan.paths.state_db)
    try:
        conn.execute("DELETE FROM mcp_sessions")  # as with one process, sessions end with the server
    finally:
        conn.close()
    socks = bind(plan.config, plan.workers)
    shared = SharedState()
    try:
        supervisor = Supervisor(plan, socks, shared)
        return supervisor.run(lambda: announce(socks[0][0].getsockname()[1]))
    finally:
        shared.close()
        for own in socks:
            for sock in own:
                sock.close()

