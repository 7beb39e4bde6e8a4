"""A small key-adding reverse proxy for the MCP conformance suite (a test harness, never part of the product).

The suite's client cannot send an API key, and the product has no auth-free mode, so this proxy adds
`x-api-key` and forwards everything else as it came: Host and Origin unchanged (the DNS-rebinding scenario
depends on them), bodies and streams byte for byte. One rewrite: the suite reads its fixture resource
`test://static-text`; the proxy points that request at the server's real text resource, the database schema.
"""

from __future__ import annotations

from aiohttp import ClientSession, ClientTimeout, web

FIXTURE_URI = b'"test://static-text"'
REAL_URI = b'"voka://schema"'
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer",
        "proxy-authorization", "proxy-connection"}


class KeyAddingProxy:
    def __init__(self, target: str, key: str) -> None:
        self.target = target
        self.key = key
        self.runner: web.AppRunner | None = None
        self.session: ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        self.session = ClientSession(timeout=ClientTimeout(total=None, sock_read=None), auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        body = await request.read()
        if FIXTURE_URI in body:
            body = body.replace(FIXTURE_URI, REAL_URI)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers["x-api-key"] = self.key
        async with self.session.request(request.method, self.target + request.path_qs, data=body or None,
                                        headers=headers, allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
