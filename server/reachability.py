"""Can Voka reach this PC? A periodic GET of `{public_url}/health` from the outside address.

A tunnel (cloudflared, ngrok) or a router can drop while the local server stays perfectly healthy; the
owner only notices when Voka stops answering customers. Asking the public address for our own /health
shows that at once. Any answer from *our* server counts (503 too: the database is down, but the path
works); a tunnel's own error page (502, 530, HTML) or no answer at all does not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from server.background import stop_task
from server.events import EventBus, ReachabilityChanged

log = logging.getLogger(__name__)

PROBE_INTERVAL = 30.0
PROBE_TIMEOUT = 5.0
OUR_HEALTH_STATES = ("healthy", "unhealthy")


@dataclass(frozen=True)
class Reachability:
    reachable: bool
    url: str
    reason: str  # empty when reachable
    checked_at: float


def unreachable_reason(url: str, why: str = "") -> str:
    """The owner-facing sentence for the tray and the Overview page."""
    return f"Voka cannot reach this PC: {url} does not answer" + (f" ({why})" if why else "") + "."


class ReachabilityProbe:
    """Checks `{public_url}/health` every `interval` seconds and on demand (`check()`); publishes a
    ReachabilityChanged event when the answer changes (and after the first check)."""

    def __init__(self, public_url: str, events: EventBus, *, interval: float = PROBE_INTERVAL,
                 timeout: float = PROBE_TIMEOUT) -> None:
        self.url = public_url.strip().rstrip("/")
        self.events = events
        self.interval = interval
        self.timeout = timeout
        self.last: Reachability | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="reachability-probe")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("reachability probe failed")
            await asyncio.sleep(self.interval)

    async def check(self) -> Reachability:
        """Ask the public address now; concurrent callers share one probe."""
        async with self._lock:
            reason = await self._probe()
            reachable = not reason
            result = Reachability(reachable, self.url, reason, time.monotonic())
            changed = self.last is None or self.last.reachable != result.reachable
            self.last = result
            if changed:
                (log.info if reachable else log.warning)("public address reachability", extra={"fields": {
                    "url": self.url, "reachable": reachable, "detail": reason}})
                self.events.publish(ReachabilityChanged(reachable, self.url, result.reason))
            return result

    async def _probe(self) -> str:
        """Why the public address does not lead here, or "" when it does."""
        if self._session is None:
            # Fresh connections each time: a kept-alive socket to the tunnel says nothing about a new caller.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(force_close=True))
        try:
            async with self._session.get(self.url + "/health", allow_redirects=False) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except TimeoutError:
            return unreachable_reason(self.url, f"no answer within {self.timeout:g} s")
        except aiohttp.ClientSSLError:
            return unreachable_reason(self.url, "its HTTPS certificate is not accepted")
        except (aiohttp.ClientError, OSError):
            return unreachable_reason(self.url)
        if isinstance(body, dict) and body.get("status") in OUR_HEALTH_STATES:
            return ""
        return (f"Voka cannot reach this PC: {self.url} answers with HTTP {response.status}, but not from "
                "Voka Bridge (is the tunnel running?).")
