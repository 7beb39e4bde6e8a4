"""The app's one link to the embedded server: lifecycle, batched events, live stats, status and notices.

Pages and the tray talk to this object, never to the server thread directly.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.calls import Calls
from app.event_pump import EventPump
from server import keyadmin
from server.autostart import Autostart
from server.embedded import EmbeddedServer
from server.events import (
    AuthBlocked,
    CatalogReloaded,
    HealthChanged,
    RequestFinished,
    ServerStateChanged,
    TunnelChanged,
)
from server.notices import Notice, NoticeRules
from server.stats import LiveStats, count_today, turned_away
from server.status import Status, overall
from server.tls import CertificateInfo

log = logging.getLogger(__name__)
HEALTH_POLL_MS = 2000
STATUS_TICK_MS = 1000


class AppController(QObject):
    requestsArrived = Signal(list)     # RequestFinished batches
    statusChanged = Signal(object)     # server.status.Status
    ticked = Signal()                  # once a second: for labels that follow traffic (tooltips, counts)
    serverStateChanged = Signal(str)
    catalogReloaded = Signal(int)
    keysChanged = Signal()
    noticeRaised = Signal(object)      # server.notices.Notice
    startFailed = Signal(str)
    tunnelChanged = Signal(object)     # server.events.TunnelChanged

    def __init__(self, server: EmbeddedServer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.server = server
        self.calls = Calls(server, self)
        self.pump = EventPump(parent=self)
        self.stats = LiveStats()
        self.rules = NoticeRules()
        self.status = Status("stopped", "")
        self.started_at: float | None = None
        self._closing = False
        self.pump.delivered.connect(self._on_events)
        server.listen(self.pump.push)
        self._health_timer = QTimer(self)
        self._health_timer.setInterval(HEALTH_POLL_MS)
        self._health_timer.timeout.connect(self._poll_health)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_TICK_MS)
        self._status_timer.timeout.connect(self.refresh_status)
        self._health_timer.start()
        self._status_timer.start()
        self._seeded = False
        self._tunnel: TunnelChanged | None = None

    # ---- facts for pages -----------------------------------------------------------------------
    @property
    def paths(self) -> Any:
        return self.server.paths

    @property
    def home(self) -> str | None:
        return self.server.home

    @property
    def serving(self) -> bool:
        return self.server.state == "serving"

    @property
    def local_url(self) -> str:
        """Where this PC reaches the server (a wildcard bind is reached on loopback)."""
        url = self.server.url or ""
        return url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")

    @property
    def voka_url(self) -> str:
        """The one URL Voka AI is given (it answers the Voka format and MCP alike): the managed tunnel's
        public address while it is up, else the configured public address, else this PC's own."""
        tunnel = self.tunnel_status()
        if tunnel.state == "up" and tunnel.public_url:
            return tunnel.public_url.rstrip("/")
        public = self.server.bridge.config.server.public_url.strip().rstrip("/")
        return public or self.local_url

    def tunnel_status(self) -> TunnelChanged:
        """The managed tunnel's latest state (as its events told it)."""
        return self._tunnel if self._tunnel is not None else self.server.tunnel.status()

    @property
    def certificate(self) -> CertificateInfo | None:
        """The certificate being served (owner's or generated), for showing its fingerprint."""
        return self.server.threaded.host.certificate

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.calls.track(self.server.start(), on_error=self._start_failed)

    def stop(self) -> None:
        self.calls.track(self.server.stop())

    def restart(self) -> None:
        self.calls.track(self.server.restart(), on_error=self._start_failed)

    def toggle(self) -> None:
        if self.server.state in ("serving", "starting"):
            self.stop()
        else:
            self.start()

    def _start_failed(self, exc: BaseException) -> None:
        self.startFailed.emit(self.server.last_failure or str(exc))

    def shutdown(self, timeout: float = 30) -> None:
        """Stop serving (in-flight requests finish), end the server thread; for Quit and tests."""
        if self._closing:
            return
        self._closing = True
        self._health_timer.stop()
        self._status_timer.stop()
        self.calls.forget()
        self.server.close(timeout)
        self.pump.drain_now()

    # ---- events --------------------------------------------------------------------------------
    @Slot(list)
    def _on_events(self, batch: list[Any]) -> None:
        requests = [e for e in batch if isinstance(e, RequestFinished)]
        if requests:
            self.stats.add(requests)
            self.requestsArrived.emit(requests)
        for event in batch:
            if isinstance(event, ServerStateChanged):
                if event.state == "serving":
                    self.started_at = event.at
                    self._seed_today()
                elif event.state in ("stopped", "failed"):
                    self.started_at = None
                self.serverStateChanged.emit(event.state)
            elif isinstance(event, CatalogReloaded):
                self.catalogReloaded.emit(event.tool_count)
            elif isinstance(event, TunnelChanged):
                self._tunnel = event
                self.tunnelChanged.emit(event)
                if event.state == "up" and event.url_changed:
                    self.notify_text("The tunnel's address changed",
                                     f"Voka must now use {event.public_url}: paste it into Voka's MCP server "
                                     "settings (Connect to Voka page → Copy).")
                elif event.state == "failed" and event.message:
                    self.notify_text("The tunnel could not start", event.message, critical=True)
            if isinstance(event, ServerStateChanged | HealthChanged | AuthBlocked):
                notice = self.rules.for_event(event)
                if notice is not None:
                    self.noticeRaised.emit(notice)
        if len(requests) < len(batch):  # a state or health change: show it now (traffic waits for the tick)
            self.refresh_status()

    def _seed_today(self) -> None:
        """Count requests recorded earlier today, once, through the server's own state connection."""
        if self._seeded or self._closing:
            return
        self._seeded = True
        server = self.server

        live_since = dt.datetime.fromtimestamp(self.started_at or time.time(), dt.UTC)

        async def count() -> int:
            bridge = server.bridge  # whichever Bridge serves now (a restart may have replaced it)
            return await bridge.on_state(count_today, bridge.state, live_since)

        def failed(exc: BaseException) -> None:
            self._seeded = False  # try again on the next start
            log.warning("cannot count today's requests: %s", exc)

        self.calls.run(count(), on_done=self.stats.seed_today, on_error=failed)

    def notify(self, notice: Notice) -> None:
        self.noticeRaised.emit(notice)

    def notify_text(self, title: str, text: str, critical: bool = False) -> None:
        self.noticeRaised.emit(Notice(title, text, critical))

    @Slot()
    def _poll_health(self) -> None:
        if self.serving and not self._closing:
            self.calls.run(self.server.bridge.check_health())

    def check_reachability(self) -> None:
        """Ask the public address again now (e.g. after the owner restarted the tunnel)."""
        if self.serving and not self._closing:
            self.calls.run(self.server.bridge.check_reachability())

    @Slot()
    def refresh_status(self) -> None:
        snap = self.stats.snapshot()
        bridge = self.server.bridge
        health = bridge.health
        reach = bridge.reachability.last if bridge.reachability is not None else None
        tunnel = self.tunnel_status()
        tunnel_problem = ("The tunnel is down, so Voka cannot reach this PC: "
                          f"{tunnel.message or 'reconnecting'}" if tunnel.state in ("down", "failed") else "")
        status = overall(self.server.state, health.healthy, health.detail,
                         recent_requests=snap.recent_requests, recent_errors=snap.recent_errors,
                         p95_ms=snap.p95_ms, failure=self.server.last_failure or self.server.boot_error,
                         unreachable=tunnel_problem or (reach.reason if reach is not None else ""),
                         turned_away=turned_away(snap))
        if status != self.status:
            self.status = status
            self.statusChanged.emit(status)
        self.ticked.emit()

    # ---- keys ----------------------------------------------------------------------------------
    def keys_changed(self) -> None:
        """After a key change: make the running server see it at once, and tell the pages."""
        if self.serving:
            self.calls.run(self.server.bridge.reload_keys())
        self.keysChanged.emit()

    def set_autostart(self, autostart: Autostart, wanted: bool, command: list[str],
                      on_done: Callable[[bool], None]) -> None:
        """Write or remove the start-at-login entry off the GUI thread; report what is really set."""
        def apply() -> bool:
            if wanted:
                autostart.enable(command)
            else:
                autostart.disable()
            return autostart.enabled()

        def failed(exc: BaseException) -> None:
            on_done(not wanted)
            self.notify_text("Start at login not changed", f"{autostart.where()}: {exc}", critical=True)

        self.calls.blocking(apply, on_done=on_done, on_error=failed)

    def voka_key(self, on_done: Any, on_error: Any = None) -> None:
        self.calls.blocking(keyadmin.voka_key, self.paths, self.server.static_keys,
                            on_done=on_done, on_error=on_error)
