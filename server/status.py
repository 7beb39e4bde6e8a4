"""One word for how the service is doing, for the tray icon and the Overview page.

The rule lives here (not in a widget) so the tray, the window and any future status endpoint agree.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVING, DEGRADED, STOPPED, FAILED, STARTING = "serving", "degraded", "stopped", "failed", "starting"

# Share of 5xx answers in the recent window, and p95 latency, above which the service counts as degraded.
ERROR_RATE_DEGRADED = 0.10
P95_DEGRADED_MS = 2000.0
MIN_REQUESTS_FOR_RATE = 5
# Share of recent calls that carried a key and were turned away (401/403/429), above which Voka is not
# being answered even though the server and the database are fine.
REFUSED_DEGRADED = 0.5

LABELS = {
    SERVING: "Serving",
    DEGRADED: "Degraded",
    STOPPED: "Stopped",
    FAILED: "Failed",
    STARTING: "Starting",
}


@dataclass(frozen=True)
class Status:
    state: str
    reason: str

    @property
    def label(self) -> str:
        return LABELS[self.state]


def overall(server_state: str, healthy: bool, health_detail: str = "", *, recent_requests: int = 0,
            recent_errors: int = 0, p95_ms: float | None = None, failure: str = "",
            unreachable: str = "", turned_away: tuple[int, str] = (0, "")) -> Status:
    """Combine server state, database health, whether the public address leads here (`unreachable`:
    the probe's reason, empty when it does or none is set) and recent traffic into one state.

    `turned_away`: recent calls that carried a key and were refused, and why (server.stats.turned_away).
    When that is most calls Voka is not being answered, though the server and database are fine; a
    scanner's calls without a key leave the state as it is."""
    if server_state == "failed":
        return Status(FAILED, failure or "The server could not start.")
    if server_state in ("starting", "stopping"):
        return Status(STARTING, "Starting…" if server_state == "starting" else "Stopping…")
    if server_state != "serving":
        return Status(STOPPED, "The server is stopped; Voka cannot reach your database.")
    if not healthy:
        return Status(FAILED, f"Database unreachable: {health_detail}" if health_detail
                      else "Database unreachable.")
    if unreachable:
        return Status(DEGRADED, unreachable)
    if recent_requests >= MIN_REQUESTS_FOR_RATE and recent_errors / recent_requests >= ERROR_RATE_DEGRADED:
        return Status(DEGRADED, f"{recent_errors} of the last {recent_requests} requests failed.")
    refused, why = turned_away
    if refused and recent_requests >= MIN_REQUESTS_FOR_RATE and refused / recent_requests >= REFUSED_DEGRADED:
        return Status(DEGRADED, f"Most calls are turned away ({refused} of the last {recent_requests}): "
                                f"{why}.")
    if p95_ms is not None and recent_requests >= MIN_REQUESTS_FOR_RATE and p95_ms >= P95_DEGRADED_MS:
        return Status(DEGRADED, f"The database is slow (95% of answers within {p95_ms / 1000:.1f} s).")
    return Status(SERVING, "Serving; the database answers.")
