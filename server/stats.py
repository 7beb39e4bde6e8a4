"""Live request statistics for the Overview page and the tray tooltip: fed with RequestFinished events.

Bounded memory whatever the traffic: per-second buckets for the last `window_seconds`, and a capped
sample of recent latencies for the percentiles.

Three outcomes are told apart: served, failed on this side (5xx) and refused (401, 403, 429: the caller
was turned away). A refusal is not a failure of the server, but an owner whose Voka is turned away must
see it, with who was refused, why, and what fixes it (`Refusal`, `explain`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import sqlite3
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from server.events import RequestFinished

REFUSED_STATUSES = frozenset({401, 403, 429})


@dataclass(frozen=True, slots=True)
class _Why:
    """Why one request was refused, as far as its event tells: the kind, the key it names, the limit."""

    kind: str
    key_name: str | None
    limit: int | None = None
    window_seconds: float | None = None


@dataclass
class _Second:
    at: int
    count: int = 0
    errors: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)
    reasons: Counter[_Why] = field(default_factory=Counter)


MAX_LATENCIES_PER_SECOND = 200


@dataclass(frozen=True)
class Refusal:
    """One kind of refusal seen in the recent window: who was turned away, why, how often, and what the
    latest such request asked for. `kind`: rate_limit, too_many_at_once, not_allowed, wrong_secret,
    old_secret, revoked_key, expired_key, unknown_key, no_key, blocked, flood, wrong_address or
    database_refused (`explain` words each)."""

    kind: str
    key_name: str | None
    count: int
    limit: int | None = None
    window_seconds: float | None = None
    tool: str | None = None
    client: str = ""


@dataclass(frozen=True)
class Snapshot:
    requests_today: int
    recent_requests: int
    recent_errors: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    last_error: str
    recent_refused: int = 0
    refusals: tuple[Refusal, ...] = ()  # most frequent first

    @property
    def refused_rate(self) -> float:
        return self.recent_refused / self.recent_requests if self.recent_requests else 0.0


@dataclass(frozen=True)
class Traffic:
    """Per-slot series for the Overview's charts, oldest first: all requests and refused ones per
    second, and the p95 latency in ms."""

    rates: list[float]
    refused: list[float]
    latency: list[float]


# The reasons server.http.auth and server.keys write into a refused request's audit detail.
_LIMIT = re.compile(r"^over (\d+) requests per ([\d.]+) s$")
_NAMED_KEY = re.compile(r"^(wrong secret for key|rotated-out secret of key|revoked key|expired key) (.+)$")
_NAMED_KINDS = {"wrong secret for key": "wrong_secret", "rotated-out secret of key": "old_secret",
                "revoked key": "revoked_key", "expired key": "expired_key"}


@functools.lru_cache(maxsize=512)
def _classify(status: int, code: str | None, detail: str | None, key_name: str | None) -> _Why:
    """The kind of refusal (cached: a flood of refusals repeats a handful of combinations)."""
    detail = detail or ""
    if status == 401:
        named = _NAMED_KEY.match(detail)
        if named:
            return _Why(_NAMED_KINDS[named.group(1)], named.group(2))
        return _Why("no_key" if detail == "no key" else "unknown_key", None)
    if status == 403:
        if code == "forbidden" and key_name:
            return _Why("not_allowed", key_name)
        return _Why("wrong_address" if code == "host_not_allowed" else "database_refused", key_name)
    if code == "auth_throttled":
        return _Why("blocked", None)
    if code in ("too_many_concurrent", "too_many_streams"):
        return _Why("too_many_at_once", key_name)
    if key_name is None:
        return _Why("flood", None)
    limit = _LIMIT.match(detail)
    if limit:
        return _Why("rate_limit", key_name, int(limit.group(1)), float(limit.group(2)))
    return _Why("rate_limit", key_name)


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class LiveStats:
    """`add()` events as they come; `snapshot()` and `series()` read the recent window."""

    def __init__(self, window_seconds: int = 600, recent_seconds: int = 300,
                 clock: Callable[[], float] = time.time) -> None:
        self.window_seconds = window_seconds
        self.recent_seconds = recent_seconds
        self._clock = clock
        self._seconds: deque[_Second] = deque()
        self._today = dt.date.today()
        self.requests_today = 0
        self.last_error = ""
        self._percentiles: tuple[float | None, float | None] = (None, None)
        self._percentiles_at = -1
        self._latest_refused: dict[tuple[str, str | None], tuple[_Why, str | None, str]] = {}

    def seed_today(self, count: int) -> None:
        """Requests already recorded today (from state.sqlite3) before this app started watching."""
        self.requests_today += count

    def add(self, events: Iterable[RequestFinished]) -> None:
        now = int(self._clock())
        today = dt.date.today()
        if today != self._today:
            self._today, self.requests_today = today, 0
        for event in events:
            if not self._seconds or self._seconds[-1].at != now:
                self._seconds.append(_Second(now))
            bucket = self._seconds[-1]
            bucket.count += 1
            if event.status >= 500:
                bucket.errors += 1
            elif event.status in REFUSED_STATUSES:
                bucket.refused += 1
                why = _classify(event.status, event.error_code, event.detail, event.key_name)
                bucket.reasons[why] += 1
                self._latest_refused[why.kind, why.key_name] = (why, event.tool, event.client)
            if event.status >= 400:
                self.last_error = f"{event.status} {event.error_code or ''} on {event.route}".strip()
            if len(bucket.latencies) < MAX_LATENCIES_PER_SECOND:
                bucket.latencies.append(event.duration_ms)
            self.requests_today += 1
        self._trim(now)

    def _trim(self, now: int) -> None:
        while self._seconds and self._seconds[0].at <= now - self.window_seconds:
            self._seconds.popleft()

    def _recent(self, seconds: int) -> list[_Second]:
        now = int(self._clock())
        self._trim(now)
        return [b for b in self._seconds if b.at > now - seconds]

    def snapshot(self) -> Snapshot:
        """Counts are exact; the percentiles are recomputed at most once a second (they sort a sample)."""
        now = int(self._clock())
        recent = self._recent(self.recent_seconds)
        count = sum(b.count for b in recent)
        errors = sum(b.errors for b in recent)
        if self._percentiles_at != now:
            latencies = sorted(v for b in recent for v in b.latencies)
            self._percentiles = (_percentile(latencies, 50), _percentile(latencies, 95))
            self._percentiles_at = now
        p50, p95 = self._percentiles
        return Snapshot(self.requests_today, count, errors, errors / count if count else 0.0, p50, p95,
                        self.last_error, sum(b.refused for b in recent), self._refusals(recent))

    def _refusals(self, recent: list[_Second]) -> tuple[Refusal, ...]:
        """The kinds of refusal in `recent`, most frequent first; each with the latest one's limit, tool
        and client. Groups are (kind, key name): bounded by the number of keys, whatever callers send."""
        counts: Counter[tuple[str, str | None]] = Counter()
        for bucket in recent:
            for why, n in bucket.reasons.items():
                counts[why.kind, why.key_name] += n
        for group in [g for g in self._latest_refused if g not in counts]:
            del self._latest_refused[group]
        refusals = []
        for group, n in counts.most_common():
            why, tool, client = self._latest_refused[group]
            refusals.append(Refusal(why.kind, why.key_name, n, why.limit, why.window_seconds, tool, client))
        return tuple(refusals)

    def traffic(self, seconds: int = 300, step: int = 5) -> Traffic:
        """Requests and refusals per second, and p95 latency, per `step`-second slot, `seconds` long."""
        now = int(self._clock())
        slots = seconds // step
        rates = [0.0] * slots
        refused = [0.0] * slots
        samples: list[list[float]] = [[] for _ in range(slots)]
        start = now - slots * step + 1
        for bucket in self._recent(seconds):
            index = (bucket.at - start) // step
            if 0 <= index < slots:
                rates[index] += bucket.count / step
                refused[index] += bucket.refused / step
                samples[index].extend(bucket.latencies)
        latency = [_percentile(sorted(s), 95) or 0.0 for s in samples]
        return Traffic(rates, refused, latency)

    def series(self, seconds: int = 300, step: int = 5) -> tuple[list[float], list[float]]:
        """(requests per second, p95 latency ms) per `step`-second slot, oldest first, `seconds` long."""
        traffic = self.traffic(seconds, step)
        return traffic.rates, traffic.latency


FIX_KEYS, FIX_RATE_LIMIT, FIX_ADDRESS = "keys", "rate_limit", "public_url"


@dataclass(frozen=True)
class Explanation:
    """A refusal in the owner's words: what happens, why it matters, and the one step that fixes it.

    `fix` says where that step is: FIX_KEYS (the Keys page, on `key_name` when set), FIX_RATE_LIMIT or
    FIX_ADDRESS (that setting on the Settings page), or "" when nothing on this PC fixes it."""

    headline: str
    advice: str
    fix: str
    fix_label: str
    key_name: str | None = None


_PER = {1.0: "per second", 60.0: "per minute", 3600.0: "per hour", 86400.0: "per day"}


def _per(window: float) -> str:
    return _PER.get(window, f"every {window:g} seconds")


def _asked(tool: str | None) -> str:
    if tool == "sql":
        return "raw SQL (a query it writes itself)"
    return f"the tool “{tool}”" if tool else "something"


def explain(refusal: Refusal, default_limit: int | None = None) -> Explanation:
    """What the Overview says about `refusal`. `default_limit` is `[rate_limit] requests`: a key over a
    different limit has its own, set when it was made, which Settings does not change."""
    key, times = refusal.key_name, f"{refusal.count:,} call{'s' if refusal.count != 1 else ''}"
    open_key = (f"Open the key “{key}”", key) if key else ("Open Keys", None)
    if refusal.kind == "rate_limit":
        limit = (f"its limit of {refusal.limit:,} {_per(refusal.window_seconds or 60)}"
                 if refusal.limit else "its limit")
        headline = f"{key} is over {limit}"
        turned = f"{key} calls more often than that, so {times} were turned away in the last 5 minutes."
        if refusal.limit and default_limit and refusal.limit != default_limit:
            return Explanation(headline, turned + " This key has its own limit, set when it was made: create "
                               "a key with a higher limit on the Keys page and give it to Voka.",
                               FIX_KEYS, *open_key)
        return Explanation(headline, turned + " If Voka needs that many calls, raise the rate limit.",
                           FIX_RATE_LIMIT, "Raise the limit in Settings")
    if refusal.kind == "too_many_at_once":
        return Explanation(f"{key} sends too many calls at once",
                           f"{times} arrived while this PC was still busy with this key's earlier calls "
                           "and were turned away. It passes by itself when Voka sends fewer calls at the "
                           "same time.", "", "")
    if refusal.kind == "not_allowed":
        return Explanation(f"{key} is not allowed to do this",
                           f"It asked for {_asked(refusal.tool)}, which its key does not allow ({times} "
                           "turned away). If Voka should do this, create a key that allows it on the Keys "
                           "page and give it to Voka.", FIX_KEYS, *open_key)
    wrong_key = {
        "wrong_secret": (f"Someone is using a wrong key for “{key}”",
                         "The calls name that key but carry a different secret. If this is Voka, copy the "
                         "key again (Keys page, Copy key) and paste it into Voka. If it is not Voka, "
                         "someone is guessing: keep the key secret."),
        "old_secret": (f"Someone is still using the old secret of “{key}”",
                       "The key was given a new secret and the old one no longer works. Copy the key again "
                       "(Keys page, Copy key) and paste it into Voka."),
        "revoked_key": (f"Someone is using the revoked key “{key}”",
                        "A revoked key never works again. If this is Voka, create a new key on the Keys page "
                        "and paste it into Voka."),
        "expired_key": (f"Someone is using the expired key “{key}”",
                        "The key's time is up. If this is Voka, create a new key on the Keys page and paste "
                        "it into Voka."),
        "unknown_key": ("Someone is using a wrong key",
                        "The key they send is not one of this PC's keys (from another install, deleted, or "
                        "mistyped). If this is Voka, copy a key from the Keys page and paste it into Voka."),
        "no_key": ("Someone is calling without a key",
                   "Every call must carry a key. If this is Voka, copy a key from the Keys page and paste it "
                   "into Voka's API key field."),
        "blocked": (f"Calls from {refusal.client or 'one address'} are blocked for a while",
                    "That address kept sending wrong keys, so it is turned away for a few minutes. If it is "
                    "Voka, copy its key again from the Keys page; the block lifts by itself."),
        "flood": ("Someone is calling too often without a key",
                  "Calls without a key are limited per address. If this is Voka, give it a key from the Keys "
                  "page."),
    }
    if refusal.kind in wrong_key:
        headline, advice = wrong_key[refusal.kind]
        return Explanation(headline, f"{advice} ({times} turned away in the last 5 minutes.)", FIX_KEYS,
                           *open_key)
    if refusal.kind == "wrong_address":
        return Explanation("Calls arrive under an address this server does not answer to",
                           f"{times} were turned away. If Voka reaches this PC through a tunnel or proxy, "
                           "enter that public address as “Address for Voka” in Settings.", FIX_ADDRESS,
                           "Set the address in Settings")
    return Explanation("The database does not allow what Voka asked",
                       f"{times} were refused by the database itself: its user lacks the right. The log "
                       "(Requests page) says which.", "", "")


def turned_away(snapshot: Snapshot) -> tuple[int, str]:
    """How many recent calls that carried a key were turned away, and the most frequent such refusal in
    the Overview's words ("" when none): when that is most calls, Voka is not being answered
    (server.status.overall). Those are the refusals that name one of this PC's keys, and keys this PC
    does not know (Voka given a key of another install); refusals of calls without a key, of an address
    blocked for guessing, or under a wrong host name before any key was read, are what scanners of a
    public address cause, and do not count."""
    keyed = [r for r in snapshot.refusals if r.key_name is not None or r.kind == "unknown_key"]
    return sum(r.count for r in keyed), explain(keyed[0]).headline if keyed else ""


def count_today(conn: sqlite3.Connection, before: dt.datetime) -> int:
    """Requests recorded in the audit log since local midnight and before `before` (when the live count
    began: later rows are counted as they arrive, and counting them here too doubled them). Audit times
    are UTC ISO strings."""
    midnight = dt.datetime.combine(dt.date.today(), dt.time()).astimezone(dt.UTC)
    row = conn.execute("SELECT COUNT(*) FROM audit WHERE ts >= ? AND ts < ?",
                       (midnight.isoformat(timespec="milliseconds"),
                        before.astimezone(dt.UTC).isoformat(timespec="milliseconds"))).fetchone()
    return int(row[0])
