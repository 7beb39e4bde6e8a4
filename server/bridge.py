"""The running service: config, catalog, database, keys, limits, audit and events, wired once.

The HTTP app, the CLI and the desktop app all hold one Bridge; nothing here knows about transports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.audit import AuditLog
from server.background import stop_task
from server.catalog import Catalog
from server.config import Config, ConfigError, DatabaseSettings
from server.db import open_database
from server.db.base import Database
from server.errors import BridgeError, DatabaseUnavailable
from server.events import CatalogReloaded, EventBus, HealthChanged, RequestFinished
from server.executor import ToolExecutor
from server.idempotency import IdempotencyStore
from server.keys import ENV_KEY_ID, KeyStore, KeyVerifier, Principal
from server.ledger import ActionLedger
from server.liveness import ProcessLease
from server.logs import register_secret
from server.paths import Paths
from server.ratelimit import AuthThrottle, RateLimiter
from server.reachability import Reachability, ReachabilityProbe
from server.secretstore import SecretStore
from server.sharedstate import Cluster
from server.state import connect_state, data_version
from server.tunnel.ingress import Ingress
from server.webhooks.delivery import WebhookWorker

log = logging.getLogger(__name__)
RECONNECT_INTERVAL = 2.0


@dataclass
class Health:
    healthy: bool
    detail: str
    checked_at: float


class Bridge:
    def __init__(self, paths: Paths, config: Config, *, database_url: str,
                 static_keys: list[tuple[str, Principal]] | None = None,
                 cluster: Cluster | None = None) -> None:
        """`static_keys` are keys that live outside state.sqlite3 (MCP_API_KEY).
        `cluster`: set in each worker of `serve --workers N`; limits and the query cache are then shared."""
        self.paths = paths
        self.config = config
        self.database_url = database_url
        self.static_keys = static_keys or []
        self.cluster = cluster
        self.events = EventBus()
        tables = cluster.shared.tables if cluster else {}
        self.limiter = RateLimiter(config.rate_limit.requests, config.rate_limit.window_seconds,
                                   tables.get("rate"), leases=cluster is not None and cluster.workers > 1)
        self.auth_throttle = AuthThrottle(config.rate_limit.failed_auth_per_minute, table=tables.get("auth"))
        self.executor = ToolExecutor(self, cluster.shared.generation if cluster else None)
        self.catalog = Catalog({})
        self.started_at = time.time()
        self.health = Health(False, "starting", 0.0)
        self._state_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self._db: Database | None = None
        self._db_open = False
        self._db_lock = asyncio.Lock()
        self._last_connect_try = 0.0
        self._last_connect_error = "The database is unavailable"
        self._tasks: list[asyncio.Task[Any]] = []
        self._state_version = -1
        self.reachability: ReachabilityProbe | None = None
        self.webhooks: WebhookWorker | None = None  # the delivery worker, when [webhooks] url is set
        self._reachability_lock = asyncio.Lock()
        # Set while a managed tunnel runs: its loopback listener, to tell tunnelled callers from direct ones.
        self.tunnel_ingress: Ingress | None = None
        self.verifier = KeyVerifier([], self.static_keys)
        for secret, _ in self.static_keys:
            register_secret(secret)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.paths.ensure()
        self._state_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self.started_at = time.time()
        self.state = await self.on_state(connect_state, self.paths.state_db)
        self.keys = KeyStore(self.state, SecretStore())
        # This process's identity for work it leaves in state.sqlite3, and the record of actions around
        # their commits (idempotency answers, webhook events): server/liveness.py, server/ledger.py.
        self.lease = ProcessLease(self.paths.data_dir)
        self.ledger = ActionLedger(self.state, self.on_state, self.lease, self.database,
                                   max_age=lambda: self.config.webhooks.max_age_hours * 3600.0,
                                   on_released=self._webhooks_due)
        self.idempotency = IdempotencyStore(self.state, self.on_state, lease=self.lease,
                                            settle=self.ledger.settle, abandoned_after=dt.timedelta(
                                                seconds=self.config.limits.request_timeout_seconds + 60))
        await self.reload_keys()
        self.catalog = Catalog.load(self.paths.tools_file)
        self.audit = AuditLog(self.state, self._state_thread, on_flush=self._save_key_usage)
        self.audit.start()
        self._db = open_database(self._database_settings(), url=self.database_url,
                                 base_dir=self.paths.config_dir)
        try:
            await self.database()
            await self.check_health()
        except BridgeError as exc:
            # the cause in the message itself: the console shows messages only, and this is the owner's
            # first (often only) sign that the file or server is not where config.toml says
            log.error(f"database unavailable at start; will keep retrying: {exc.detail}", extra={"fields": {
                "database": self._db.describe(), "error": exc.detail}})
            self._set_health(False, exc.detail)
        try:  # actions a stopped process left unconfirmed: settled before the first request
            await self.ledger.settle_abandoned()
        except Exception:
            log.exception("settling actions left by a stopped process failed; retrying in the background")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._prune_audit(), name="audit-pruner"),
                       loop.create_task(self._watch_keys(), name="key-watcher"),
                       loop.create_task(self._watch_health(), name="health-watcher"),
                       loop.create_task(self.ledger.run_settler(), name="action-settler")]
        if self.config.webhooks.url and (self.cluster is None or self.cluster.index == 0):
            self.webhooks = WebhookWorker(self.on_state, lambda: self.state, self.config.webhooks,
                                          self.events)
            self._tasks.append(loop.create_task(self.webhooks.run(), name="webhook-worker"))

    def _webhooks_due(self) -> None:
        if self.webhooks is not None:
            self.webhooks.wake()

    def _database_settings(self) -> DatabaseSettings:
        """`pool_min` / `pool_max` bound the whole server's connections to PostgreSQL (what the owner's
        max_connections must allow), so with `--workers N` each process opens its share, rounded up."""
        settings = self.config.database
        if self.cluster is None or self.cluster.workers <= 1:
            return settings
        workers = self.cluster.workers
        return settings.model_copy(update={"pool_max": math.ceil(settings.pool_max / workers),
                                           "pool_min": math.ceil(settings.pool_min / workers)})

    def watch_reachability(self) -> None:
        """Once listening: probe `[server] public_url` periodically (nothing to do without one; one worker
        probes for the whole server)."""
        server = self.config.server
        if self.cluster is not None and self.cluster.index != 0:
            return
        if server.public_url.strip() and server.check_public_url and self.reachability is None:
            self.reachability = ReachabilityProbe(self.config.server.public_url, self.events)
            self.reachability.start()

    async def follow_public_url(self, url: str | None) -> None:
        """Probe the managed tunnel's public address while it is up (`url`), or with None go back to
        `[server] public_url` (or to no probe). `check_public_url = false` turns both off."""
        server = self.config.server
        target = (url or server.public_url).strip().rstrip("/") if server.check_public_url else ""
        async with self._reachability_lock:
            if self.reachability is not None and self.reachability.url == target:
                return
            if self.reachability is not None:
                await self.reachability.stop()
                self.reachability = None
            if target:
                self.reachability = ReachabilityProbe(target, self.events)
                self.reachability.start()

    async def check_reachability(self) -> Reachability | None:
        """Probe the public address now (after the owner fixed the tunnel); None without one."""
        return await self.reachability.check() if self.reachability is not None else None

    async def stop(self) -> None:
        if self.reachability is not None:
            await self.reachability.stop()
            self.reachability = None
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        self.webhooks = None
        if hasattr(self, "audit"):
            await self.audit.stop()
        if hasattr(self, "ledger"):
            await self.ledger.close()
        if self._db is not None and self._db_open:
            await self._db.close()
            self._db_open = False
        if hasattr(self, "state"):
            await self.on_state(self.state.close)
        self._state_thread.shutdown(wait=True)
        if hasattr(self, "lease"):
            self.lease.close()

    async def on_state(self, fn: Any, *args: Any) -> Any:
        """Run a state.sqlite3 call on its own thread (sqlite3 is blocking)."""
        return await asyncio.get_running_loop().run_in_executor(self._state_thread, fn, *args)

    # ---- database --------------------------------------------------------------------------
    async def database(self) -> Database:
        """The open database, reconnecting (at most every couple of seconds) after a failure."""
        db = self._db
        if db is None:
            raise DatabaseUnavailable("No database is configured.")
        if self._db_open:
            return db
        if self._db_lock.locked():  # another request is reconnecting: answer now, do not queue behind it
            raise DatabaseUnavailable("The database is unavailable; reconnecting.")
        async with self._db_lock:
            if self._db_open:
                return db
            if time.monotonic() - self._last_connect_try < RECONNECT_INTERVAL and self._last_connect_try:
                raise DatabaseUnavailable(f"{self._last_connect_error.rstrip('.')}; retrying shortly.")
            self._last_connect_try = time.monotonic()
            try:
                await db.open()
            except BridgeError as exc:  # keep the reason for the requests answered until the next try
                self._last_connect_error = exc.detail
                raise
            self._db_open = True
            log.info("database connected", extra={"fields": {"database": db.describe()}})
            return db

    async def check_health(self) -> Health:
        try:
            db = await self.database()
            await asyncio.wait_for(db.ping(), timeout=3.0)
            self._set_health(True, "ok")
        except BridgeError as exc:
            self._set_health(False, exc.detail)
        except (TimeoutError, OSError) as exc:
            self._set_health(False, f"database did not answer: {type(exc).__name__}")
        return self.health

    def _set_health(self, healthy: bool, detail: str) -> None:
        changed = healthy != self.health.healthy
        self.health = Health(healthy, detail, time.monotonic())
        if changed:
            (log.info if healthy else log.error)("health changed", extra={"fields": {
                "healthy": healthy, "detail": detail}})
            self.events.publish(HealthChanged(healthy, detail))

    async def _prune_audit(self, interval: float = 3600.0) -> None:
        """Keep the audit log to `[logging] audit_retention_days`: at start, then hourly."""
        while True:
            try:
                removed = await self.on_state(self.audit.prune, self.config.logging.audit_retention_days)
                if removed:
                    log.info("audit rows past retention removed", extra={"fields": {"rows": removed}})
            except Exception:
                log.exception("pruning the audit log failed")
            await asyncio.sleep(interval)

    async def _watch_health(self, interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.check_health()

    # ---- keys ------------------------------------------------------------------------------
    async def reload_keys(self) -> None:
        """Re-read key records (a revoke from the CLI or the app takes effect at once)."""
        def read() -> tuple[int, list[Any]]:
            return data_version(self.state), self.keys.all()

        self._state_version, records = await self.on_state(read)
        self.verifier = KeyVerifier(records, self.static_keys)

    def authenticate(self, presented: str | None) -> Principal | None:
        return self.verifier.verify(presented)

    async def _watch_keys(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                version = await self.on_state(data_version, self.state)
                if version != self._state_version:
                    await self.reload_keys()
            except Exception:
                log.exception("reloading keys failed")

    def _save_key_usage(self, batch: list[RequestFinished]) -> None:
        counts = Counter(e.key_id for e in batch if e.key_id and e.key_id != ENV_KEY_ID
                         and 200 <= e.status < 500 and e.status not in (401, 403))
        if counts:
            when = dt.datetime.now(dt.UTC).replace(microsecond=0)
            self.keys.record_usage({key_id: (n, when) for key_id, n in counts.items()})

    # ---- catalog ---------------------------------------------------------------------------
    async def reload_catalog(self, path: Path | None = None) -> Catalog:
        """Validate and swap in tools.toml; on error the running catalog stays as it was."""
        catalog = Catalog.load(path or self.paths.tools_file)
        self.catalog = catalog
        self.executor.clear_cache()
        log.info("catalog reloaded", extra={"fields": {"tools": len(catalog)}})
        self.events.publish(CatalogReloaded(len(catalog)))
        return catalog


__all__ = ["Bridge", "ConfigError"]
