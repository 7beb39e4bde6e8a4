"""A small closed-loop HTTP load generator: N concurrent clients, fixed duration, latency percentiles.

Used by every benchmark in bench/ so the figures in the README are comparable. Targets only loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import aiohttp

T = TypeVar("T")


@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


async def run_load(name: str, url: str, body: dict | list, headers: dict[str, str], *, concurrency: int = 32,
                   duration: float = 10.0, warmup: float = 1.0, ok_status: int = 200) -> Result:
    """Each client sends the next request as soon as the previous answer is in."""
    _loopback_only(url)
    payload = json.dumps(body).encode()
    sent_headers = {"Content-Type": "application/json", **headers}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(stop_at: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                async with session.post(url, data=payload, headers=sent_headers) as response:
                    await response.read()
                    status = response.status
                if record:
                    latencies.append(time.perf_counter() - started)
                    if status != ok_status:
                        errors += 1

        await asyncio.gather(*(client(time.perf_counter() + warmup, False) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(client(started + duration, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return Result(name, len(latencies), errors, round(elapsed, 2), round(len(latencies) / elapsed, 1),
                  round(statistics.median(latencies) * 1000, 2) if latencies else 0.0, round(p99 * 1000, 2))


def _loopback_only(url: str) -> None:
    if (urlparse(url).hostname or "") not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("bench: only loopback targets are allowed")


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))  # type: ignore[union-attr]
    return round(value / 1000 if text.endswith("us") else value * 1000 if text.endswith("s")
                 and not text.endswith("ms") else value, 2)


def run_wrk(name: str, url: str, body: dict | list, headers: dict[str, str], *, concurrency: int = 32,
            duration: float = 10.0) -> Result:
    """The same closed loop driven by wrk (C, one thread): less of the cores goes to the generator."""
    _loopback_only(url)
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    lines.append(f"wrk.body = [[{json.dumps(body)}]]")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--latency",
                              "-s", script.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return Result(name, requests, errors, round(duration, 2), round(rps, 1), p50, p99)


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark shares: the load generator, and how many processes serve Voka Bridge."""
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--generator", choices=("python", "wrk"), default="python",
                        help="this module's asyncio clients, or wrk (if installed)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="serve Voka Bridge with N processes (serve --workers N); others unchanged")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="measure the scenarios in turn N times and keep each one's median round: on a "
                             "shared machine whose speed drifts, every server sees the same drift")
    parser.add_argument("--anchor", type=Path, metavar="DIR",
                        help="also serve the Voka Bridge source tree in DIR (an earlier version: `git "
                             "worktree add DIR <commit>`) and measure it in the same rounds, same Python")
    parser.add_argument("--fresh", action="store_true",
                        help="start the servers anew for every round, in turn which one first: a "
                             "process's speed depends on its luck (address layout, hash seed; two processes "
                             "of the same code differed by up to 10%% for a whole run), which only many "
                             "processes average out")


def write_config(home: Path, database_url: str | None = None) -> None:
    """The benchmarks' config.toml: the rate limit raised so the limiter is not what is measured, and the
    database named without its password (DATABASE_URL in the server's environment carries it)."""
    database = ""
    if database_url is not None:
        parts = urlparse(database_url)
        database = f'[database]\nurl = "postgresql://{parts.username}@{parts.hostname}:{parts.port}{parts.path}"\n\n'
    (home / "config.toml").write_text(database + "[rate_limit]\nrequests = 100000000\nwindow_seconds = 60\n")


def serve_command(source: Path | None) -> tuple[list[str], Path | None]:
    """How to start `python -m server`: from this checkout, or from an anchor's source tree (run from
    there, its own `server` package is the one imported)."""
    return [sys.executable, "-m", "server"], (source.resolve() if source is not None else None)


def measure(args: argparse.Namespace, name: str, url: str, body: dict | list,
            headers: dict[str, str]) -> Result:
    """One scenario with the chosen generator, concurrency and duration."""
    if args.generator == "wrk":
        if not shutil.which("wrk"):
            raise SystemExit("bench: wrk is not installed (apt-get install wrk)")
        return run_wrk(name, url, body, headers, concurrency=args.concurrency, duration=args.duration)
    return asyncio.run(run_load(name, url, body, headers, concurrency=args.concurrency,
                                duration=args.duration))


@dataclass
class Scenario:
    name: str
    url: str
    body: dict | list
    headers: dict[str, str]
    anchor_for: str | None = None  # this is the --anchor tree's run of the scenario of that name


@dataclass
class Cost:
    """What this tree costs against the anchor in one scenario: requests/s lost, round by round."""

    name: str
    losses: list[float]  # 1 - this tree's requests/s / the anchor's, in the same round, back to back

    @property
    def median(self) -> float:
        return statistics.median(self.losses)

    @property
    def middle_half(self) -> tuple[float, float]:
        ordered = sorted(self.losses)
        return ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]

    @property
    def interval(self) -> tuple[float, float] | None:
        """A 95% confidence interval of the median loss, from the rounds' order statistics (so no
        assumption about how the machine's noise is spread): the j-th smallest and j-th largest loss, j
        as large as keeps the chance that the median lies outside under 5% (None under 6 rounds)."""
        n = len(self.losses)
        outside = 0.0  # chance that fewer than j rounds fall on one side of the median, both sides
        j = 0
        while j < n // 2 and outside + 2 * math.comb(n, j) / 2**n <= 0.05:
            outside += 2 * math.comb(n, j) / 2**n
            j += 1
        if j == 0:
            return None
        ordered = sorted(self.losses)
        return ordered[j - 1], ordered[n - j]


def paired(scenarios: list[Scenario]) -> list[Scenario]:
    """The run order: each anchor scenario right after the scenario it is the anchor of, so the two are
    measured seconds apart and a drift of the machine's speed hits both alike."""
    anchors = {s.anchor_for: s for s in scenarios if s.anchor_for is not None}
    ordered: list[Scenario] = []
    for scenario in scenarios:
        if scenario.anchor_for is None:
            ordered.append(scenario)
            if scenario.name in anchors:
                ordered.append(anchors[scenario.name])
    return ordered


def in_turn(items: list[T], number: int) -> list[T]:
    """`items` in order in even rounds, reversed in odd ones, so none always goes first."""
    return items if number % 2 == 0 else items[::-1]


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    """Stop the servers in `procs` (emptying it), killing one that does not stop within 30 s."""
    while procs:
        proc = procs.pop()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_trees(servers: list[subprocess.Popen[str]], home: Path, number: int, anchor: Path | None,
                start: Callable[[Path, Path | None], str]) -> dict[Path | None, str]:
    """Stop `servers`, then start this tree's server and (with `anchor`) the anchor's, each in a new
    folder under `home`/`number`, every other round the anchor first; their URLs by source tree (None:
    this one). `start(folder, source)` starts one server, keeping it in `servers`."""
    stop_all(servers)
    folder = home / str(number)
    trees: list[tuple[Path, Path | None]] = [(folder / "current", None)]
    if anchor is not None:
        trees.append((folder / "anchor", anchor))
    return {source: start(where, source) for where, source in in_turn(trees, number)}


def run_rounds(args: argparse.Namespace, scenarios: list[Scenario],
               restart: Callable[[], list[Scenario]] | None = None) -> list[list[Result]]:
    """Every scenario once per round, in turn (all servers already running), for `args.rounds` rounds;
    the results per scenario, in round order. Every other round runs them in the reverse order, so no
    server is always measured right after the same other one (whose load the database or the machine
    may still be clearing), and a scenario and its anchor swap places. With --fresh, `restart` starts
    every server anew before each round after the first and gives the same scenarios at their new
    addresses."""
    rounds: list[list[Result]] = [[] for _ in scenarios]
    for number in range(max(1, args.rounds)):
        if number and args.fresh and restart is not None:
            scenarios = restart()
        plan = list(zip(scenarios, rounds, strict=True))
        for scenario, results in in_turn(plan, number):
            results.append(measure(args, scenario.name, scenario.url, scenario.body, scenario.headers))
            print(f"bench: round {number + 1}: {scenario.name}: {results[-1].rps:,.0f} req/s",
                  file=sys.stderr)
    return rounds


def median_round(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def compare(args: argparse.Namespace, scenarios: list[Scenario]) -> list[Result]:
    """Each scenario's median round by requests/s (see run_rounds)."""
    return [median_round(results) for results in run_rounds(args, scenarios)]


def costs(scenarios: list[Scenario], rounds: list[list[Result]]) -> list[Cost]:
    """Per scenario with an anchor, the requests/s lost in each round against the anchor's run next to
    it: the machine's drift between rounds cancels out, which medians of whole runs cannot do."""
    by_name = dict(zip((s.name for s in scenarios), rounds, strict=True))
    return [Cost(s.anchor_for, [1 - now.rps / before.rps for now, before in
                                zip(by_name[s.anchor_for], results, strict=True)])
            for s, results in zip(scenarios, rounds, strict=True) if s.anchor_for is not None]


def cost_lines(found: list[Cost]) -> str:
    lines = ["| scenario | requests/s lost against the anchor, median round | 95% interval of the median | "
             "middle half of the rounds | rounds |", "|---|---:|---:|---:|---:|"]
    for c in found:
        interval = f"{c.interval[0]:.1%} to {c.interval[1]:.1%}" if c.interval else "too few rounds"
        lines.append(f"| {c.name} | {c.median:.1%} | {interval} | {c.middle_half[0]:.1%} to "
                     f"{c.middle_half[1]:.1%} | {len(c.losses)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--key", required=True)
    parser.add_argument("--body", required=True, help="JSON request body")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(run_load("custom", args.url, json.loads(args.body), {"x-api-key": args.key},
                                  concurrency=args.concurrency, duration=args.duration))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
