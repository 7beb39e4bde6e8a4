"""The public side of a stand-in tunnel: an HTTP relay that forwards every request to the tunnel's target
as the real providers do on the wire (the provider's client-address headers added, the public Host kept,
bodies and event streams passed through as they come). Used in-process by the ngrok stand-in and by the
fake `cloudflared` program.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

CHOOSE_CLIENT = "X-Stand-In-Client"
"""A test may name the internet caller's address per request with this header (the relay removes it), to
play several callers behind one tunnel (an attacker and Voka, say)."""
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length", "host"}

SESSION = web.AppKey("relay_session", aiohttp.ClientSession)
Rewrite = Callable[[web.Request, str], dict[str, str]]
"""(request, the caller's address) → the headers the provider sets (replacing what the caller sent under
those names)."""


def relay_app(origin: str, rewrite: Rewrite, client_ip: str, host: str = "") -> web.Application:
    """`origin`: http://127.0.0.1:PORT to forward to; `client_ip`: the address callers seem to have
    (unless a request names one with CHOOSE_CLIENT); `host`: the public Host the provider sends on
    (empty: the one the caller used)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def start(app: web.Application) -> None:
        app[SESSION] = aiohttp.ClientSession(auto_decompress=False,
                                                 timeout=aiohttp.ClientTimeout(total=None, sock_read=None))

    async def stop(app: web.Application) -> None:
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict((name, value) for name, value in request.headers.items()
                              if name.lower() not in HOP_BY_HOP and name.lower() != CHOOSE_CLIENT.lower())
        for name, value in rewrite(request, request.headers.get(CHOOSE_CLIENT, client_ip)).items():
            headers[name] = value
        headers["Host"] = host or request.host
        body = await request.read()
        async with app[SESSION].request(request.method, origin + request.rel_url.raw_path_qs,
                                            headers=headers, data=body or None,
                                            allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Run `app` on a free loopback port."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, int(sock.getsockname()[1])


def ngrok_headers(request: web.Request, client_ip: str) -> dict[str, str]:
    """ngrok's way: the caller's X-Forwarded-For (anything it likes) with the real address appended."""
    sent = request.headers.get("X-Forwarded-For", "")
    return {"X-Forwarded-For": f"{sent}, {client_ip}" if sent else client_ip, "X-Forwarded-Proto": "https"}


def cloudflare_headers(request: web.Request, client_ip: str) -> dict[str, str]:
    """Cloudflare's way: CF-Connecting-IP set to the caller's address (whatever the caller sent under
    that name is replaced), X-Forwarded-For appended."""
    return {**ngrok_headers(request, client_ip), "CF-Connecting-IP": client_ip}
