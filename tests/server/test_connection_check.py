""""Test the connection" against a real server on a real port, and against an address that is not ours."""

from __future__ import annotations

from aiohttp import web

from server.connection_check import check_connection
from tests.conftest import RunningServer, free_port


async def test_every_protocol_works_through_the_url(server: RunningServer) -> None:
    checks = await check_connection(server.url + "/", server.keys["writer"])
    assert [(c.name, c.ok) for c in checks] == [("Reachable", True), ("Voka request format", True), ("MCP", True)]
    assert "5 tool(s)" in checks[2].detail


async def test_a_wrong_key_is_named_as_the_problem(server: RunningServer) -> None:
    checks = await check_connection(server.url, "vbk_000000000000_wrong")
    assert checks[0].ok and not checks[1].ok and not checks[2].ok
    assert "API key was refused (401)" in checks[1].detail and "401" in checks[2].detail


async def test_an_address_that_is_not_voka_bridge_is_said_so() -> None:
    async def bad_gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        checks = await check_connection(f"http://127.0.0.1:{port}", "vbk_x")
    finally:
        await runner.cleanup()
    assert len(checks) == 1 and not checks[0].ok and "not from Voka Bridge" in checks[0].detail
    nothing = await check_connection(f"http://127.0.0.1:{free_port()}", "vbk_x", timeout=3)
    assert not nothing[0].ok and "does not answer" in nothing[0].detail
