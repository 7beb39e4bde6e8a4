"""Run the HTTP server: on the caller's loop (`voka-bridge serve`) or on its own thread (the desktop app).

aiohttp's AppRunner/TCPSite (not `run_app`, which only works on the main thread) so the same code serves
both, and a stop finishes in-flight requests before the database closes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from server import eventloop, tls
from server.bridge import Bridge
from server.config import Config, ConfigError
from server.events import ServerStateChanged
from server.http.app import create_app
from server.tls import CertificateInfo
from server.tunnel.control import TunnelControl
from server.tunnel.manager import TunnelManager

log = logging.getLogger(__name__)
T = TypeVar("T")

INSECURE_BIND_HELP = (
    "Refusing to serve plain HTTP on {host}: API keys would cross the network unencrypted. Either "
    "(1) turn on HTTPS: set [server] tls_cert and tls_key in config.toml to your certificate, or "
    "tls_self_signed = true to have one generated; or (2) bind to 127.0.0.1 and let a tunnel (cloudflared, "
    "ngrok) provide HTTPS. If a TLS proxy of your own sits in front, set [server] allow_insecure_http = true."
)


def certificate_for(config: Config, tls_dir: Path | None) -> CertificateInfo | None:
    """The certificate to serve: the owner's files, or the generated self-signed one, or none."""
    server = config.server
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError("config.toml: server.tls_cert and server.tls_key must be set together")
    try:
        if server.tls_cert:
            return tls.describe(Path(server.tls_cert), Path(server.tls_key))
        if server.tls_self_signed:
            if tls_dir is None:
                raise ConfigError("config.toml: server.tls_self_signed needs a folder for the certificate")
            extra = [server.host, urlsplit(server.public_url).hostname or ""]
            return tls.ensure_self_signed(tls_dir, tls.default_names(extra))
    except tls.TlsProblem as exc:
        raise ConfigError(f"config.toml: server TLS: {exc}") from None
    return None


def ssl_context_for(config: Config, certificate: CertificateInfo | None = None) -> ssl.SSLContext | None:
    """The TLS context, or None for plain HTTP, which is refused off loopback unless explicitly allowed."""
    server = config.server
    if certificate is None and (server.tls or server.tls_key):
        certificate = certificate_for(config, None)
    if certificate is None:
        if not server.is_loopback and not server.allow_insecure_http:
            raise ConfigError(INSECURE_BIND_HELP.format(host=server.host))
        if not server.is_loopback:
            log.warning("SECURITY: serving plain HTTP on a network address because allow_insecure_http is "
                        "set; API keys and data cross the network unencrypted unless your own TLS proxy "
                        "sits in front", extra={"fields": {"host": server.host}})
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"config.toml: server.tls_cert/tls_key cannot be loaded: {exc}") from None
    return context


def site_url(config: Config, port: int, *, tls: bool) -> str:
    host = config.server.host
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


class ServerHost:
    """Owns one Bridge and its listening site(s) on the current event loop.

    `socks`: already listening sockets to serve on (a worker of `serve --workers N` serves the ones its
    supervisor bound, one per address of [server] host) instead of binding [server] host and port itself.
    """

    def __init__(self, bridge: Bridge, socks: list[socket.socket] | None = None) -> None:
        self.bridge = bridge
        self.socks = socks
        self.runner: web.AppRunner | None = None
        self.url: str | None = None
        self.port: int | None = None
        self.certificate: CertificateInfo | None = None  # shown to the owner (fingerprint) when on TLS
        self.tunnels = TunnelManager(bridge)  # the managed tunnel ([tunnel] in config.toml), once listening

    async def start(self) -> str:
        config = self.bridge.config
        self.certificate = certificate_for(config, self.bridge.paths.data_dir / tls.FOLDER)
        ssl_context = ssl_context_for(config, self.certificate)
        self.bridge.events.publish(ServerStateChanged("starting"))
        await self.bridge.start()
        try:
            self.runner = web.AppRunner(create_app(self.bridge), access_log=None,
                                        shutdown_timeout=config.server.shutdown_timeout_seconds,
                                        keepalive_timeout=config.limits.idle_timeout_seconds,
                                        handle_signals=False)
            await self.runner.setup()
            sites: list[web.BaseSite] = [web.SockSite(self.runner, sock, ssl_context=ssl_context)
                                         for sock in self.socks or ()]
            if self.socks is None:
                sites.append(web.TCPSite(self.runner, config.server.host, config.server.port,
                                         ssl_context=ssl_context, reuse_address=True))
            for site in sites:
                await site.start()
        except BaseException:
            await self.stop()
            raise
        self.port = self.runner.addresses[0][1]
        self.url = site_url(config, self.port, tls=ssl_context is not None)
        log.info("listening", extra={"fields": {"url": self.url, "event_loop": eventloop.running()}})
        if self.certificate is not None:
            log.info("serving HTTPS", extra={"fields": {
                "certificate": str(self.certificate.cert_path),
                "fingerprint_sha256": self.certificate.fingerprint}})
        self.bridge.events.publish(ServerStateChanged("serving", self.url))
        self.bridge.watch_reachability()
        try:
            await self.tunnels.open(self.runner)
        except Exception:  # the server still serves this PC; the tunnel's own events tell the owner
            log.exception("the tunnel could not be started")
        return self.url

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, then close the database and state."""
        self.bridge.events.publish(ServerStateChanged("stopping", self.url))
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        await self.tunnels.close()  # after the runner: requests already in the tunnel get their answers
        await self.bridge.stop()
        self.bridge.events.publish(ServerStateChanged("stopped"))


class ThreadedServerHost:
    """A ServerHost on a dedicated thread with its own event loop, so a busy GUI never delays a call."""

    def __init__(self, bridge: Bridge) -> None:
        self.host = ServerHost(bridge)
        self.loop = eventloop.new_event_loop()
        self.tunnel = TunnelControl(self)  # the app's handle on the tunnel of whichever host serves
        self._thread = threading.Thread(target=self._run, name="voka-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def start(self, timeout: float = 30) -> str:
        return self.submit(self.host.start()).result(timeout)

    def stop(self, timeout: float = 30) -> None:
        self.submit(self.host.stop()).result(timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()
