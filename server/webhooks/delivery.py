"""The delivery worker: POSTs due outbox messages to `[webhooks] url`, at least once.

Each attempt sends the message's stored body under its own `webhook-id`, a fresh `webhook-timestamp`
and the signature over both, with Voka's API key as `x-api-key`. Any 2xx is a delivery; anything else
(another status, a refused connection, no answer within `timeout_seconds`) is retried after an
exponential back-off with jitter — `first_retry_seconds` doubling per failure, at most an hour, each
wait drawn between half and all of that — until `max_age_hours` after the event; an attempt that still
fails then makes it a dead letter. A message is leased while it is being sent, so no two workers send it
at once; the outbox lives in state.sqlite3, so a restart resumes where the last process stopped. A
process that dies in mid-send leaves a lease that ends after the attempt's timeout: that message is sent
again, under the same `webhook-id` (Voka drops the duplicate by it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from server import __version__
from server.config import WebhookSettings
from server.events import EventBus, WebhookDelivered, WebhookFailed
from server.secretstore import KeyringUnavailable, SecretStore
from server.webhooks import outbox, secrets, signing

log = logging.getLogger(__name__)

BATCH = 16
POLL_SECONDS = 1.0  # the outbox is looked at this often (a CLI resend or another worker's event)
MAX_DELAY = 3600.0
CREDENTIALS_TTL = 60.0
ANSWER_BYTES = 4096  # of the receiver's answer, read and dropped


def backoff(failures: int, first: float, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait after the n-th failed attempt: first, 2x first, 4x first ... at most an hour,
    each drawn between half and all of it (jitter: many events that failed together spread out)."""
    ceiling = min(MAX_DELAY, first * 2 ** max(failures - 1, 0))
    return rng(ceiling / 2, ceiling)


@dataclass
class Credentials:
    secret: str | None
    api_key: str | None
    problem: str = ""


class WebhookWorker:
    def __init__(self, on_state: Callable[..., Awaitable[Any]], conn_getter: Callable[[], Any],
                 settings: WebhookSettings, events: EventBus, store: SecretStore | None = None) -> None:
        self._on_state = on_state
        self._conn = conn_getter
        self.settings = settings
        self._events = events
        self._store = store or SecretStore()
        self._wakeup = asyncio.Event()
        self._credentials: tuple[float, Credentials] | None = None
        self._warned: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url)

    def wake(self) -> None:
        """New events are due (called on the server's loop)."""
        self._wakeup.set()

    def _load_credentials(self) -> Credentials:
        """Blocking (the keyring): the signing secret, made on first use, and Voka's API key."""
        try:
            secret = secrets.signing_secret(self._store, create=True)
        except KeyringUnavailable:
            return Credentials(None, secrets.voka_api_key(self._store),
                               "no signing secret: there is no usable OS keyring to keep one; set "
                               f"{secrets.SIGNING_ENV} (make one with `voka-bridge webhooks secret` "
                               "where a keyring is)")
        except ValueError as exc:
            return Credentials(None, None, f"the stored signing secret is unusable: {exc}")
        return Credentials(secret, secrets.voka_api_key(self._store))

    async def credentials(self) -> Credentials:
        cached = self._credentials
        if cached is None or time.monotonic() - cached[0] > CREDENTIALS_TTL:
            found = await asyncio.to_thread(self._load_credentials)
            self._credentials = cached = (time.monotonic(), found)
            if found.problem:
                self._warn_once(found.problem, error=True)
            elif found.api_key is None:
                self._warn_once("webhooks: no API key for Voka is set, so events go without x-api-key; "
                                "set it with `voka-bridge webhooks set-key`")
        return cached[1]

    def _warn_once(self, message: str, *, error: bool = False) -> None:
        if message not in self._warned:
            self._warned.add(message)
            (log.error if error else log.warning)(message)

    async def run(self) -> None:
        """Until cancelled: send what is due, then sleep until the next message is due (at most a second,
        so messages resent from the CLI or raised by another worker go out promptly)."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        lease = self.settings.timeout_seconds + 30.0
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._wakeup.clear()
                try:
                    due = await self._on_state(outbox.claim_due, self._conn(), time.time(), lease, BATCH)
                    if due:
                        creds = await self.credentials()
                        await asyncio.gather(*(self._deliver(session, message, creds) for message in due))
                        continue
                    upcoming = await self._on_state(outbox.next_due, self._conn())
                except Exception:
                    log.exception("the webhook worker failed; trying again shortly")
                    upcoming = None
                pause = POLL_SECONDS if upcoming is None else min(max(upcoming - time.time(), 0.02),
                                                                   POLL_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), pause)

    async def _deliver(self, session: aiohttp.ClientSession, message: outbox.Message,
                       creds: Credentials) -> None:
        started = time.perf_counter()
        status: int | None = None
        if creds.secret is None:
            error = creds.problem
        else:
            body = message.body.encode()
            headers = {"Content-Type": "application/json", "User-Agent": f"voka-bridge/{__version__}",
                       **signing.headers(creds.secret, message.id, int(time.time()), body)}
            if creds.api_key:
                headers["x-api-key"] = creds.api_key
            try:
                async with session.post(self.settings.url, data=body, headers=headers,
                                        allow_redirects=False) as response:
                    status = response.status
                    await response.content.read(ANSWER_BYTES)
                error = "" if 200 <= status < 300 else f"Voka answered HTTP {status}"
            except TimeoutError:
                error = f"no answer within {self.settings.timeout_seconds:g} s"
            except aiohttp.ClientError as exc:
                error = f"cannot reach {self.settings.url}: {type(exc).__name__}"
        now = time.time()
        if not error:
            assert status is not None
            await self._on_state(outbox.delivered, self._conn(), message.id, status, now)
            self._events.publish(WebhookDelivered(message.id, message.event, message.attempts + 1, status,
                                                  round((time.perf_counter() - started) * 1000, 3)))
            return
        delay = backoff(message.attempts + 1, self.settings.first_retry_seconds)
        dead, next_at = await self._on_state(outbox.failed, self._conn(), message.id, error, status, now,
                                             delay)
        (log.error if dead else log.warning)(
            "webhook dead letter" if dead else "webhook delivery failed; will retry", extra={"fields": {
                "webhook_id": message.id, "event": message.event, "attempts": message.attempts + 1,
                "error": error, **({} if dead else {"retry_in_s": round(next_at - now, 1)})}})
        self._events.publish(WebhookFailed(message.id, message.event, message.attempts + 1, error, status,
                                           dead, None if dead else next_at))
