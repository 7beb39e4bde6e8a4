"""What the desktop app calls to run the tunnel (EmbeddedServer.tunnel), from the Qt thread.

Every call returns at once: the work (config.toml, the keyring, sockets, processes) runs on the server
thread, and the caller gets a concurrent Future. What happens next (starting, a download's progress, up
with its URL, down, failed with what to do) arrives as TunnelChanged events through the listeners given
to EmbeddedServer.listen(), like every other server event. `status()` reads the latest one directly.

The choice is kept in config.toml ([tunnel] provider and domain), so the tunnel comes back with the next
start of the server (and of the app); the tokens go to the keyring only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from server.config_edit import write_settings
from server.events import TunnelChanged
from server.tunnel import secrets
from server.tunnel.manager import tunnel_settings
from server.tunnel.supervisor import STOPPED

if TYPE_CHECKING:
    from server.host import ThreadedServerHost

T = TypeVar("T")


class TunnelControl:
    def __init__(self, threaded: ThreadedServerHost) -> None:
        self.threaded = threaded

    def start(self, provider: str, domain: str = "") -> Future[TunnelChanged]:
        """Save [tunnel] provider/domain in config.toml and start that tunnel now if the server runs (else
        it starts with the server). Starting again restarts it (after the owner stored a token, say).
        The future fails with ConfigError for an unknown provider, a bad domain or an unwritable
        config.toml; everything after that is told by TunnelChanged events."""
        async def run() -> TunnelChanged:
            host = self.threaded.host
            settings = tunnel_settings(provider, domain, host.bridge.config.tunnel.ingress_port)
            await _blocking(write_settings, host.bridge.paths.config_file,
                            {"tunnel": {"provider": settings.provider, "domain": settings.domain}})
            if host.runner is None:
                host.bridge.config.tunnel = settings
                return TunnelChanged(STOPPED, settings.provider,
                                     message="Saved; the tunnel starts with the server.")
            return await host.tunnels.start(settings.provider, settings.domain)

        return self.threaded.submit(run())

    def stop(self) -> Future[None]:
        """Stop the tunnel and clear [tunnel] provider (the domain is kept for next time)."""
        async def run() -> None:
            host = self.threaded.host
            await _blocking(write_settings, host.bridge.paths.config_file, {"tunnel": {"provider": ""}})
            host.bridge.config.tunnel = host.bridge.config.tunnel.model_copy(update={"provider": ""})
            await host.tunnels.stop()

        return self.threaded.submit(run())

    def status(self) -> TunnelChanged:
        """The latest state (safe from any thread: an immutable snapshot)."""
        host = self.threaded.host
        if host.runner is None:
            return TunnelChanged(STOPPED, host.bridge.config.tunnel.provider)
        return host.tunnels.status

    def set_secret(self, provider: str, secret: str) -> Future[None]:
        """Keep the ngrok authtoken ("ngrok") or the Cloudflare tunnel token ("cloudflare" or
        "cloudflare-named") in the keyring. Fails with ValueError saying what is wrong with a pasted
        value, or KeyringUnavailable; the secret never reaches config.toml or a log."""
        return self.threaded.submit(_blocking(lambda: secrets.store(secrets.secret_kind(provider), secret)))

    def has_secret(self, provider: str) -> Future[bool]:
        """Whether a token is stored (keyring, or the environment); never returns it."""
        return self.threaded.submit(_blocking(lambda: secrets.stored(secrets.secret_kind(provider))))

    def delete_secret(self, provider: str) -> Future[None]:
        return self.threaded.submit(_blocking(lambda: secrets.delete(secrets.secret_kind(provider))))


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
