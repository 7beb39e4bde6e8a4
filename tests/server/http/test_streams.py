"""MCP event streams have places of their own per key and close when idle, so open streams never take
the places a key's calls need."""

from __future__ import annotations

import asyncio
import time

import aiohttp

PROTOCOL = "2025-06-18"
INVENTORY = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}


async def _session(http: aiohttp.ClientSession, url: str, key: str) -> dict[str, str]:
    headers = {"x-api-key": key, "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    async with http.post(url + "/mcp", json=init, headers=headers) as response:
        assert response.status == 200
        return {**headers, "Mcp-Session-Id": response.headers["Mcp-Session-Id"], "MCP-Protocol-Version": PROTOCOL}


async def test_streams_do_not_hold_request_places_and_have_their_own_cap(make_server) -> None:  # type: ignore[no-untyped-def]
    running = await make_server({"rate_limit": {"max_concurrent_per_key": 2, "max_streams_per_key": 3}})
    key = await running.create_key("voka", ("query",))
    async with aiohttp.ClientSession() as http:
        streams = []
        for _ in range(3):
            headers = await _session(http, running.url, key)
            response = await http.get(running.url + "/mcp", headers=headers)
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
            streams.append(response)
        # Three open streams, two request places: calls still go through at once.
        results = await asyncio.gather(*(running.post("/query", INVENTORY, key=key) for _ in range(4)))
        assert [status for status, _, _ in results] == [200] * 4
        headers = await _session(http, running.url, key)
        async with http.get(running.url + "/mcp", headers=headers) as refused:
            assert refused.status == 429 and refused.headers["Retry-After"] == "5"
            assert "event streams open" in (await refused.json())["error"]["message"]
        other = await running.create_key("other", ("query",))  # another key's streams are its own
        other_headers = await _session(http, running.url, other)
        async with http.get(running.url + "/mcp", headers=other_headers) as response:
            assert response.status == 200
        streams[0].close()  # the client goes away: its place comes free within about a second
        deadline = time.monotonic() + 5
        while True:
            async with http.get(running.url + "/mcp", headers=headers) as response:
                if response.status == 200 or time.monotonic() > deadline:
                    break
            await asyncio.sleep(0.2)
        assert response.status == 200
        for stream in streams[1:]:
            stream.close()


async def test_an_idle_stream_is_closed(make_server) -> None:  # type: ignore[no-untyped-def]
    running = await make_server({"limits": {"stream_idle_seconds": 1}})
    key = await running.create_key("voka", ("query",))
    async with aiohttp.ClientSession() as http:
        headers = await _session(http, running.url, key)
        started = time.monotonic()
        async with http.get(running.url + "/mcp", headers=headers) as response:
            assert response.status == 200
            await asyncio.wait_for(response.read(), 10)  # the server ends the stream
        assert time.monotonic() - started < 8
