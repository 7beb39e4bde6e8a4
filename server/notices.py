"""Which server events deserve the owner's attention, and what to tell them in plain words.

The app shows these as desktop notifications; the rules (and their wording) live here, not in a widget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from server.events import AuthBlocked, HealthChanged, ServerStateChanged

REPEAT_SECONDS = 300.0


@dataclass(frozen=True)
class Notice:
    title: str
    text: str
    critical: bool = False


class NoticeRules:
    """Turns events into notices, once per cause per `REPEAT_SECONDS` so a flapping cause never spams."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}

    def _once(self, cause: str) -> bool:
        now = self._clock()  # type: ignore[operator]
        last = self._last.get(cause)
        if last is not None and now - last < REPEAT_SECONDS:
            return False
        self._last[cause] = now
        return True

    def for_event(self, event: object) -> Notice | None:
        if isinstance(event, ServerStateChanged) and event.state == "failed":
            if self._once("start-failed"):
                return Notice("Voka Bridge could not start",
                              event.detail or "The server failed to start.", critical=True)
        elif isinstance(event, HealthChanged):
            if not event.healthy and self._once("db-down"):
                return Notice("Database unreachable",
                              f"Voka cannot read your data right now: {event.detail}", critical=True)
            if event.healthy and "db-down" in self._last:
                self._last.pop("db-down")
                return Notice("Database back", "Your database answers again; Voka is served normally.")
        elif isinstance(event, AuthBlocked) and self._once(f"auth:{event.client}"):
            return Notice("Repeated failed sign-ins",
                          f"{event.client} tried wrong API keys several times and is blocked for "
                          f"{int(event.seconds)} s. If this is not you or Voka, keep the key secret.",
                          critical=True)
        return None

    @staticmethod
    def key_revoked(name: str) -> Notice:
        return Notice("API key revoked", f"The key {name!r} stopped working at once.")

    @staticmethod
    def kept_in_tray() -> Notice:
        return Notice("Voka Bridge keeps running",
                      "The window is closed but the server keeps serving Voka. Use the tray icon to open "
                      "the dashboard or to quit.")
