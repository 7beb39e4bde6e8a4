"""Keep one tunnel running: start it, watch it, restart it with exponential back-off, stop it.

Every change is one TunnelChanged (server/events.py) handed to `publish`: starting → up → (down →
starting → up)… → stopped, or failed when only the owner can fix it. A run that stayed up for a while
resets the back-off, so a tunnel that drops once a day restarts at once, and one that cannot start at
all is retried every minute at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import ClassVar

from server.background import stop_task
from server.events import TunnelChanged
from server.tunnel.provider import Tunnel, TunnelFactory, TunnelProblem, TunnelSpec

log = logging.getLogger(__name__)

STARTING, UP, DOWN, FAILED, STOPPED = "starting", "up", "down", "failed", "stopped"


class Supervisor:
    first_delay: ClassVar[float] = 1.0  # seconds before the first restart; doubles each time
    max_delay: ClassVar[float] = 60.0
    stable_after: ClassVar[float] = 60.0  # a run up this long resets the back-off
    open_timeout: ClassVar[float] = 900.0  # a start (a first download on a slow line included) that hangs

    def __init__(self, spec: TunnelSpec, factory: TunnelFactory, publish: Callable[[TunnelChanged], None], *,
                 previous_url: str = "") -> None:
        """`previous_url`: the address this provider had last time (url_changed compares with it)."""
        self.spec = spec
        self.factory = factory
        self.publish = publish
        self.previous_url = previous_url
        self.status = TunnelChanged(STOPPED, spec.provider, ingress=spec.target)
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._tunnel: Tunnel | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start in the background; progress arrives as events."""
        if not self.running:
            self._set(STARTING, message="Starting the tunnel…", public_url="", progress=None)
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"tunnel-{self.spec.provider}")

    async def stop(self) -> None:
        """Stop the tunnel (its process, its session) and say so."""
        task, self._task = self._task, None
        await stop_task(task)
        await self._close()
        if self._closing is not None:  # a close the cancelled loop had begun: let it finish
            with contextlib.suppress(Exception):
                await self._closing
        self._set(STOPPED, message="", public_url="", progress=None)

    def delay(self, attempt: int) -> float:
        return min(self.first_delay * 2 ** min(attempt, 32), self.max_delay)

    # ---- the loop --------------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        while True:
            self._set(STARTING, message="Starting the tunnel…", public_url="", progress=None)
            tunnel = self._tunnel = self.factory(self.spec)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow stop()'s cancellation when
                # the start ends at the same moment, and the loop would never stop.
                async with asyncio.timeout(self.open_timeout):
                    url = await tunnel.open(self._progress)
            except TimeoutError:
                problem = TunnelProblem(f"The tunnel did not come up within {self.open_timeout:g} s.")
            except TunnelProblem as exc:
                problem = exc
            except Exception as exc:  # a provider's bug must not end supervision silently
                log.exception("tunnel start failed unexpectedly")
                problem = TunnelProblem(f"The tunnel could not start ({type(exc).__name__}); "
                                        "the log has the details.")
            else:
                problem = None
            if problem is None:
                started = time.monotonic()
                self._up(url)
                try:
                    reason = await tunnel.wait(self._health)
                except TunnelProblem as exc:
                    problem = exc
                    reason = exc.message
                if time.monotonic() - started >= self.stable_after:
                    attempt = 0
            else:
                reason = problem.message
            await self._close()
            if problem is not None and problem.permanent:
                log.error("tunnel failed", extra={"fields": {
                    "provider": self.spec.provider, "detail": reason}})
                self._set(FAILED, message=reason, public_url="", progress=None)
                return
            wait = self.delay(attempt)
            attempt += 1
            self.restarts += 1
            log.warning("tunnel down; restarting", extra={"fields": {
                "provider": self.spec.provider, "detail": reason, "retry_in_seconds": wait}})
            self._set(DOWN, message=f"{reason.rstrip('.')}. Trying again in {wait:g} s.", progress=None)
            await asyncio.sleep(wait)

    def _up(self, url: str) -> None:
        url = url.rstrip("/")
        changed = bool(self.previous_url) and url != self.previous_url
        self.previous_url = url
        log.info("tunnel up", extra={"fields": {
            "provider": self.spec.provider, "url": url, "changed": changed}})
        self._set(UP, public_url=url, message="", url_changed=changed, progress=None)

    def _health(self, up: bool, why: str) -> None:
        """The provider's connection dropped or came back while its process or session lives on."""
        if up and self.status.state == DOWN:
            self._set(UP, message="")
        elif not up and self.status.state == UP:
            log.warning("tunnel connection lost", extra={"fields": {
                "provider": self.spec.provider, "detail": why}})
            self._set(DOWN, message=why)

    def _progress(self, message: str, fraction: float | None) -> None:
        """A slow start's news (a download: at most one event per percent)."""
        before = self.status.progress
        new_step = fraction is None or before is None or int(fraction * 100) != int(before * 100)
        if new_step and (message != self.status.message or fraction != before):
            self._set(STARTING, message=message, progress=fraction)

    async def _close(self) -> None:
        """Close the current run; shielded, so that stopping the supervisor midway never leaves a
        cloudflared process or an ngrok session behind."""
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            self._closing = asyncio.get_running_loop().create_task(tunnel.close(), name="tunnel-close")
            with contextlib.suppress(Exception):
                await asyncio.shield(self._closing)

    def _set(self, state: str, **changes: object) -> None:
        fields = {"provider": self.spec.provider, "public_url": self.status.public_url,
                  "message": self.status.message, "url_changed": self.status.url_changed,
                  "progress": self.status.progress, "ingress": self.spec.target}
        if state in (STARTING, FAILED, STOPPED):
            fields["url_changed"] = False
        fields.update(changes)
        status = TunnelChanged(state, **fields)  # type: ignore[arg-type]
        if status != self.status:
            self.status = status
            self.publish(status)
