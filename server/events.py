"""Server → GUI events: plain dataclasses on a bus. Subscribers must be quick (queue or signal)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.logs import redact

log = logging.getLogger(__name__)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x as much, and one is built per request
class RequestFinished:
    ts: str
    key_id: str | None
    key_name: str | None
    client: str
    method: str
    route: str
    protocol: str
    tool: str | None
    status: int
    duration_ms: float
    rows: int | None
    error_code: str | None
    request_body: str | None = None  # first 2 KB, unmasked: show only through masked_*()
    response_body: str | None = None
    detail: str | None = None  # why a request was refused (audit only; never sent to the caller)

    def masked_request(self) -> str:
        """The request body with keys and passwords masked, for display (masking is lazy: most
        events are never looked at, and the request path should not pay for it)."""
        return redact(self.request_body or "")

    def masked_response(self) -> str:
        return redact(self.response_body or "")


@dataclass(frozen=True)
class HealthChanged:
    healthy: bool
    detail: str


@dataclass(frozen=True)
class ServerStateChanged:
    state: str  # "starting", "serving", "stopping", "stopped", "failed"
    url: str | None = None
    detail: str = ""
    at: float = field(default_factory=time.time)  # when it changed (not when the app heard of it)


@dataclass(frozen=True)
class CatalogReloaded:
    tool_count: int


@dataclass(frozen=True)
class ReachabilityChanged:
    """Whether `[server] public_url` leads to this server (server.reachability)."""

    reachable: bool
    url: str
    reason: str  # empty when reachable


@dataclass(frozen=True)
class AuthBlocked:
    client: str
    seconds: float


@dataclass(frozen=True)
class TunnelChanged:
    """The managed tunnel's state (server/tunnel/); also what `tunnel_status()` returns.

    `state`: "starting" (connecting, or downloading cloudflared: `progress` 0..1), "up" (`public_url`
    answers), "down" (lost; restarting by itself with back-off, the tray shows amber), "failed" (needs the
    owner: a missing or refused token, a domain the account does not own; `message` says what to do),
    "stopped" (none configured, or switched off). `url_changed`: the public address differs from the one
    this provider had last time (a quick tunnel's changes at every start: Voka's setting needs updating).
    """

    state: str
    provider: str = ""
    public_url: str = ""
    message: str = ""
    url_changed: bool = False
    progress: float | None = None
    ingress: str = ""  # where it forwards, http://127.0.0.1:PORT (a named tunnel's service at Cloudflare)


@dataclass(frozen=True)
class WebhookDelivered:
    """Voka accepted an event (server/webhooks/delivery.py)."""

    message_id: str  # the webhook-id
    event: str
    attempts: int  # including this one
    status: int  # Voka's HTTP status
    duration_ms: float


@dataclass(frozen=True)
class WebhookFailed:
    """A delivery attempt failed: retried at `next_attempt_at` (Unix time), or `dead` (a dead letter)."""

    message_id: str
    event: str
    attempts: int
    error: str  # what went wrong, for the owner (never a secret)
    status: int | None  # Voka's HTTP status, None when there was no answer
    dead: bool
    next_attempt_at: float | None = None


Event = (RequestFinished | HealthChanged | ServerStateChanged | CatalogReloaded | AuthBlocked
         | ReachabilityChanged | TunnelChanged | WebhookDelivered | WebhookFailed)


class EventBus:
    """Calls each subscriber with each event it subscribed to, in subscription order. Every request
    publishes one, so who gets an event of a given type is worked out once per type, not per event."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[Callable[[Any], None], tuple[type, ...]]] = []
        self._routes: dict[type, tuple[Callable[[Any], None], ...]] = {}

    def subscribe(self, callback: Callable[[Any], None], *kinds: type) -> Callable[[], None]:
        """`callback` gets every event, or only those of `kinds` when given; returns the unsubscribe."""
        entry = (callback, kinds)
        self._subscribers.append(entry)
        self._routes.clear()

        def unsubscribe() -> None:
            self._subscribers.remove(entry)
            self._routes.clear()

        return unsubscribe

    def publish(self, event: Event) -> None:
        route = self._routes.get(type(event))
        if route is None:
            route = self._routes[type(event)] = tuple(
                callback for callback, kinds in self._subscribers if not kinds or isinstance(event, kinds))
        for callback in route:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed")
