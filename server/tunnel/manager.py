"""The tunnel of one running server (ServerHost.tunnels): its ingress listener, its supervisor, the status
file, the reachability probe of its public address, and [tunnel] changes in config.toml applied live.

`voka-bridge tunnel start|stop` and the app both change [tunnel] in config.toml; a running server notices
the change within a couple of seconds and starts, switches or stops its tunnel (a start for a tunnel
that failed or is down retries it at once). Other config.toml changes still need a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import ValidationError

from server.background import stop_task
from server.config import ConfigError, TunnelSettings, describe_validation_error
from server.events import TunnelChanged
from server.tunnel import PROVIDERS
from server.tunnel.ingress import Ingress, client_header
from server.tunnel.provider import TunnelSpec
from server.tunnel.status import HEARTBEAT_SECONDS, STATUS_FILE, StatusFile, read_config
from server.tunnel.supervisor import DOWN, FAILED, STOPPED, UP, Supervisor

if TYPE_CHECKING:
    from server.bridge import Bridge

log = logging.getLogger(__name__)
WORK_DIR = "tunnel"


class TunnelManager:
    watch_interval: ClassVar[float] = 2.0  # how often config.toml is looked at

    def __init__(self, bridge: Bridge, config_file: Path | None = None) -> None:
        self.bridge = bridge
        self.config_file = config_file or bridge.paths.config_file
        self.status_file = StatusFile(bridge.paths.data_dir / STATUS_FILE)
        self.supervisor: Supervisor | None = None
        self.status = TunnelChanged(STOPPED, bridge.config.tunnel.provider)
        self.runner: web.BaseRunner | None = None
        self._site: web.SockSite | None = None
        self._port = 0
        self._seen = ""  # read_config's stamp of the config.toml last applied
        self._watch: asyncio.Task[None] | None = None
        self._beat = 0.0
        self._lock = asyncio.Lock()
        self._follows: set[asyncio.Task[None]] = set()

    @property
    def ingress(self) -> Ingress | None:
        return self.bridge.tunnel_ingress

    # ---- with the server -------------------------------------------------------------------------
    async def open(self, runner: web.BaseRunner) -> None:
        """Once the server listens: start the configured tunnel and watch config.toml. Not in the worker
        processes of `serve --workers N` (one tunnel per worker would be N tunnels; `serve` refuses
        --workers with a tunnel configured)."""
        if self.bridge.cluster is not None:
            return
        self.runner = runner
        self._seen = (await _read(self.config_file))[0]
        self._heartbeat()
        self._watch = asyncio.get_running_loop().create_task(self._watch_config(), name="tunnel-config")
        settings = self.bridge.config.tunnel
        if settings.provider:
            await self.start(settings.provider, settings.domain)

    async def close(self) -> None:
        """The server stops: stop the tunnel (the ingress listener went with the server's runner)."""
        if self.runner is None:
            return
        await stop_task(self._watch)
        self._watch = None
        self._site = None  # runner.cleanup() closed it
        await self.stop(closing=True)
        self.runner = None
        for task in list(self._follows):
            await stop_task(task)
        self._heartbeat()

    # ---- start / stop ----------------------------------------------------------------------------
    async def start(self, provider: str, domain: str = "") -> TunnelChanged:
        """Start (or restart, or switch to) `provider`; returns at once with the "starting" status, the
        rest arrives as TunnelChanged events. ConfigError for an unknown provider or a bad domain."""
        settings = tunnel_settings(provider, domain, self.bridge.config.tunnel.ingress_port)
        if not settings.provider:
            await self.stop()
            return self.status
        if self.runner is None:
            raise ConfigError("The server is not running; the tunnel starts with it.")
        async with self._lock:
            self._seen = (await _read(self.config_file))[0]  # what the caller wrote there is applied now
            await self._stop_supervisor()
            self.bridge.config.tunnel = settings
            try:
                port = await self._listen(self._ingress_port(settings))
            except OSError as exc:
                self._changed(TunnelChanged(FAILED, provider, message=(
                    f"The tunnel's local port {self._ingress_port(settings)} cannot be used "
                    f"({exc.strerror or exc}): set [tunnel] ingress_port in config.toml to a free port.")))
                return self.status
            self.bridge.tunnel_ingress = Ingress(port, client_header(provider))
            spec = TunnelSpec(provider, settings.domain, f"http://127.0.0.1:{port}",
                              self.bridge.paths.data_dir / WORK_DIR)
            self.supervisor = Supervisor(spec, PROVIDERS[provider], self._changed,
                                         previous_url=self.status_file.last_url(provider))
            self.supervisor.start()
            return self.status

    async def stop(self, *, closing: bool = False) -> None:
        """Stop the tunnel and its ingress listener (`closing`: the server is stopping too)."""
        async with self._lock:
            if not closing:
                self._seen = (await _read(self.config_file))[0]
            await self._stop_supervisor()
            if self._site is not None:
                with contextlib.suppress(RuntimeError):  # already closed with the runner
                    await self._site.stop()
            self._site, self._port = None, 0
            self.bridge.tunnel_ingress = None
            if self.status.state != STOPPED:  # e.g. it had failed: no supervisor said "stopped"
                self._changed(TunnelChanged(STOPPED, self.status.provider))
            if not closing:
                await self.bridge.follow_public_url(None)

    async def _stop_supervisor(self) -> None:
        supervisor, self.supervisor = self.supervisor, None
        if supervisor is not None:
            await supervisor.stop()

    def _ingress_port(self, settings: TunnelSettings) -> int:
        """[tunnel] ingress_port; else any free port, but for a named Cloudflare tunnel (whose service
        address is written in Cloudflare's dashboard) a fixed one: the server's port + 1."""
        if settings.ingress_port:
            return settings.ingress_port
        port = self.bridge.config.server.port
        return port + 1 if settings.provider == "cloudflare-named" and 0 < port < 65535 else 0

    async def _listen(self, port: int) -> int:
        """The ingress listener on 127.0.0.1 (kept across tunnel restarts when the port stays the same)."""
        if self._site is not None and port in (0, self._port):
            return self._port
        if self._site is not None:
            with contextlib.suppress(RuntimeError):
                await self._site.stop()
            self._site = None
        assert self.runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if sys.platform != "win32":  # on Windows SO_REUSEADDR would let another program share the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
            sock.setblocking(False)
            site = web.SockSite(self.runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            raise
        self._site, self._port = site, int(sock.getsockname()[1])
        log.info("tunnel ingress listening", extra={"fields": {"url": f"http://127.0.0.1:{self._port}"}})
        return self._port

    # ---- news ------------------------------------------------------------------------------------
    def _changed(self, status: TunnelChanged) -> None:
        """Every TunnelChanged: to the event bus, the status file, the Host check and the probe."""
        self.status = status
        ingress = self.bridge.tunnel_ingress
        if ingress is not None and status.public_url:
            ingress.public_host = (urlsplit(status.public_url).hostname or "").lower()
        self.bridge.events.publish(status)
        self._heartbeat()
        if status.state == UP:
            self._follow(status.public_url)
        elif status.state == FAILED:
            self._follow(None)

    def _follow(self, url: str | None) -> None:
        """Point the reachability probe at the tunnel's public address (or back at [server] public_url)."""
        task = asyncio.get_running_loop().create_task(self.bridge.follow_public_url(url))
        self._follows.add(task)
        task.add_done_callback(self._follows.discard)
        task.add_done_callback(_log_failure)

    def _heartbeat(self) -> None:
        self.status_file.write(self.status, running=self.runner is not None,
                               applied=self._seen)
        self._beat = time.monotonic()

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval)
            seen = self._seen
            try:
                await self._apply_if_changed()
            except Exception:
                log.exception("applying [tunnel] from config.toml failed")
            if self._seen != seen or time.monotonic() - self._beat >= HEARTBEAT_SECONDS:
                self._heartbeat()  # also says which config.toml has been applied

    async def _apply_if_changed(self) -> None:
        """A [tunnel] written by `voka-bridge tunnel start|stop` (or by hand) while the server runs."""
        stamp, data = await _read(self.config_file)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            document = tomllib.loads((data or b"").decode("utf-8"))
            settings = TunnelSettings.model_validate(document.get("tunnel", {}))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            log.warning("config.toml changed but cannot be read; [tunnel] not applied",
                        extra={"fields": {"error": str(exc)}})
            return
        except ValidationError as exc:
            log.warning("config.toml changed; its [tunnel] is not valid and was not applied",
                        extra={"fields": {"error": describe_validation_error(self.config_file, exc)}})
            return
        running = self.supervisor.spec if self.supervisor is not None else None
        if not settings.provider:
            if running is not None or self.status.state != STOPPED:
                log.info("tunnel switched off in config.toml")
                await self.stop()
            self.bridge.config.tunnel = settings
            return
        same = (running is not None and running.provider == settings.provider
                and running.domain == settings.domain
                and settings.ingress_port in (0, self._port))
        if not same or self.status.state in (FAILED, DOWN):
            log.info("tunnel (re)started from config.toml", extra={"fields": {"provider": settings.provider}})
            self.bridge.config.tunnel = settings
            await self.start(settings.provider, settings.domain)


def tunnel_settings(provider: str, domain: str, ingress_port: int = 0) -> TunnelSettings:
    """[tunnel] as asked for, validated as config.toml would be (ConfigError saying what is wrong)."""
    try:
        return TunnelSettings(provider=provider, domain=domain, ingress_port=ingress_port)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError("; ".join(f"[tunnel] {'.'.join(map(str, e['loc']))}: "
                                    + e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


async def _read(path: Path) -> tuple[str, bytes | None]:
    return await asyncio.get_running_loop().run_in_executor(None, read_config, path)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("pointing the reachability probe at the tunnel failed", exc_info=task.exception())
