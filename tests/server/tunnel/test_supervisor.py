"""The supervisor's rules, with scripted tunnels: what is retried, what waits for the owner, how often it
speaks while a slow start (a download) goes on, and that stopping it midway leaves nothing running."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.events import TunnelChanged
from server.tunnel.provider import Health, Progress, Tunnel, TunnelProblem, TunnelSpec
from server.tunnel.supervisor import Supervisor
from tests.server.tunnel.conftest import until

SPEC = TunnelSpec("cloudflare-quick", "", "http://127.0.0.1:9", Path("."))


class Scripted(Tunnel):
    """open() and wait() do what the test says; close() is counted."""

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.closed = 0
        self.open_calls = 0

    async def open(self, progress: Progress) -> str:
        self.open_calls += 1
        step = self.script.pop(0) if self.script else "https://same.example"
        if callable(step):
            return await step(progress)
        if isinstance(step, BaseException):
            raise step
        return str(step)

    async def wait(self, health: Health) -> str:
        await asyncio.Event().wait()
        return ""

    async def close(self) -> None:
        await asyncio.sleep(0.05)  # something to interrupt
        self.closed += 1


async def run(script: list[object], until_state: str) -> tuple[Supervisor, list[TunnelChanged], Scripted]:
    events: list[TunnelChanged] = []
    tunnel = Scripted(script)
    supervisor = Supervisor(SPEC, lambda _spec: tunnel, events.append)
    supervisor.start()
    await until(lambda: supervisor.status.state == until_state, 10)
    return supervisor, events, tunnel


async def test_a_transient_problem_is_retried_and_a_bug_does_not_end_supervision():
    supervisor, events, tunnel = await run(
        [TunnelProblem("the network is down"), RuntimeError("a provider bug")], "up")
    await supervisor.stop()
    states = [e.state for e in events]
    assert states == ["starting", "down", "starting", "down", "starting", "up", "stopped"]
    assert events[1].message == "the network is down. Trying again in 0.05 s."
    assert "could not start (RuntimeError)" in events[3].message
    assert tunnel.open_calls == 3 and tunnel.closed == 3


async def test_a_permanent_problem_waits_for_the_owner():
    supervisor, events, tunnel = await run([TunnelProblem("no token", permanent=True)], "failed")
    await asyncio.sleep(0.3)
    assert [e.state for e in events] == ["starting", "failed"] and events[-1].message == "no token"
    assert tunnel.open_calls == 1 and not supervisor.running
    await supervisor.stop()
    assert events[-1].state == "stopped"


async def test_a_download_reports_progress_at_most_once_a_percent():
    async def download(progress: Progress) -> str:
        for done in range(1, 2001):
            progress(f"Downloading cloudflared ({done} of 2000 chunks)…", done / 2000)
        return "https://after-download.example"

    supervisor, events, _ = await run([download], "up")
    await supervisor.stop()
    fractions = [e.progress for e in events if e.progress is not None]
    assert 90 <= len(fractions) <= 101 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert events[-2].state == "up" and events[-2].progress is None


async def test_stopping_during_a_start_closes_what_was_opened():
    started = asyncio.Event()

    async def slow(progress: Progress) -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    events: list[TunnelChanged] = []
    tunnel = Scripted([slow])
    supervisor = Supervisor(SPEC, lambda _spec: tunnel, events.append)
    supervisor.start()
    await started.wait()
    await supervisor.stop()
    assert tunnel.closed == 1 and events[-1].state == "stopped" and not supervisor.running


async def test_url_changed_compares_with_the_last_known_address():
    events: list[TunnelChanged] = []
    tunnel = Scripted(["https://b.example/"])
    supervisor = Supervisor(SPEC, lambda _spec: tunnel, events.append, previous_url="https://a.example")
    supervisor.start()
    await until(lambda: supervisor.status.state == "up")
    assert supervisor.status.public_url == "https://b.example" and supervisor.status.url_changed is True
    supervisor._health(False, "edge lost")
    supervisor._health(True, "")
    assert [e.state for e in events][-2:] == ["down", "up"] and events[-1].url_changed is True
    await supervisor.stop()
    same = Supervisor(SPEC, lambda _spec: Scripted(["https://b.example"]), events.append,
                      previous_url="https://b.example")
    same.start()
    await until(lambda: same.status.state == "up")
    assert same.status.url_changed is False
    await same.stop()


async def test_stop_always_stops_even_when_a_start_ends_at_that_moment():
    """A start that fails just as stop() cancels the loop (a refused connection is that quick) must not
    swallow the cancellation: with asyncio.wait_for on Python 3.11 the loop went on restarting forever."""
    async def quick_failure(progress: Progress) -> str:
        raise TunnelProblem("connection refused")

    for spins in range(12):  # stop at each point of the start in turn
        tunnel = Scripted([quick_failure] * 50)
        supervisor = Supervisor(SPEC, lambda _spec, t=tunnel: t, lambda _event: None)
        supervisor.start()
        for _ in range(spins):
            await asyncio.sleep(0)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(supervisor.stop(), 5)
        assert asyncio.get_running_loop().time() - started < 1.0 and not supervisor.running
