"""A small closed-loop HTTP load generator: N concurrent clients, fixed duration, latency percentiles.

Used by every benchmark in bench/ so the figures in the README are comparable. Targets only loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

import aiohttp


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
    host = urlparse(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("bench: only loopback targets are allowed")
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
