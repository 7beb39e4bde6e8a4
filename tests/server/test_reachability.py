"""Reachability of the public address: the probe against real local servers, never an outside address."""

from __future__ import annotations

from aiohttp import web

from server.events import EventBus, ReachabilityChanged
from server.reachability import ReachabilityProbe
from server.status import overall
from tests.conftest import free_port


async def test_the_servers_own_address_answers_and_a_closed_port_does_not(server) -> None:
    events: list[object] = []
    server.host.bridge.events.subscribe(events.append)
    probe = ReachabilityProbe(server.url + "/", server.host.bridge.events, timeout=2)
    try:
        result = await probe.check()
        assert result.reachable and result.reason == "" and result.url == server.url
        await probe.check()  # no change, no second event
        closed = f"http://127.0.0.1:{free_port()}"
        probe.url = closed
        result = await probe.check()
        assert not result.reachable
        assert result.reason == f"Voka cannot reach this PC: {closed} does not answer."
    finally:
        await probe.stop()
    changes = [e for e in events if isinstance(e, ReachabilityChanged)]
    assert changes == [ReachabilityChanged(True, server.url, ""),
                       ReachabilityChanged(False, closed, result.reason)]


async def test_a_tunnel_error_page_is_not_our_server() -> None:
    async def bad_gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad gateway: origin down</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/health", bad_gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    probe = ReachabilityProbe(f"http://127.0.0.1:{port}", EventBus(), timeout=2)
    try:
        result = await probe.check()
    finally:
        await probe.stop()
        await runner.cleanup()
    assert not result.reachable and "HTTP 502" in result.reason and "tunnel" in result.reason


async def test_the_bridge_probes_only_when_a_public_url_is_set(make_server) -> None:
    plain = await make_server()
    assert plain.host.bridge.reachability is None
    assert await plain.host.bridge.check_reachability() is None
    closed = f"http://127.0.0.1:{free_port()}"
    tunnelled = await make_server({"server": {"port": 0, "public_url": closed}})
    result = await tunnelled.host.bridge.check_reachability()
    assert result is not None and not result.reachable and closed in result.reason


def test_an_unreachable_public_address_degrades_a_healthy_server() -> None:
    reason = "Voka cannot reach this PC: https://shop.example does not answer."
    status = overall("serving", True, unreachable=reason)
    assert (status.state, status.reason) == ("degraded", reason)
    assert overall("serving", False, "file missing", unreachable=reason).state == "failed"  # worse wins
    assert overall("stopped", True, unreachable=reason).state == "stopped"
    assert overall("serving", True, unreachable="").state == "serving"
