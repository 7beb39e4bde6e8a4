"""Server → GUI events: plain dataclasses on a bus. Subscribers must be quick (queue or signal)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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


Event = (RequestFinished | HealthChanged | ServerStateChanged | CatalogReloaded | AuthBlocked
         | ReachabilityChanged)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Callable[[Any], None]] = []

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed")
