"""ngrok through its official agent SDK (PyPI `ngrok`), inside this process: there is no ngrok program.

The authtoken comes from the keyring (`tunnel:ngrok-authtoken`, else NGROK_AUTHTOKEN). With [tunnel]
domain the tunnel asks for the account's reserved domain, an address that never changes (every ngrok
account gets one free domain: the recommended set-up); without it ngrok picks a random address. The
public URL is the SDK listener's `url()`. The SDK reconnects by itself after a network drop; it says so
through its disconnection and heartbeat callbacks, which become "down" and "up" here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar

from server import __version__
from server.logs import redact
from server.tunnel import secrets
from server.tunnel.provider import Health, Progress, Tunnel, TunnelProblem, TunnelSpec

log = logging.getLogger(__name__)

MISSING_TOKEN = ("ngrok needs your authtoken: sign in at dashboard.ngrok.com (free), copy \"Your Authtoken\" "
                 "and store it with `voka-bridge tunnel token ngrok` or in the app's tunnel settings.")
REFUSED_TOKEN = ("ngrok refused the authtoken (it may have been reset): copy \"Your Authtoken\" again from "
                 "dashboard.ngrok.com and store it with `voka-bridge tunnel token ngrok` or in the app.")
_TOKEN_ERRORS = ("ERR_NGROK_105", "ERR_NGROK_106", "ERR_NGROK_107", "ERR_NGROK_4018")


def explain(error: BaseException | str, domain: str = "") -> TunnelProblem:
    """ngrok's error (the SDK raises ValueError with ngrok's own message and ERR_NGROK_… code) in words
    for the owner, and whether trying again can help."""
    text = redact(": ".join(str(a) for a in error.args) if isinstance(error, BaseException) else error)
    lowered = text.lower()
    if any(code in text for code in _TOKEN_ERRORS) or ("authtoken" in lowered and "invalid" in lowered):
        return TunnelProblem(f"{REFUSED_TOKEN} (ngrok said: {text})", permanent=True)
    if "ERR_NGROK_108" in text:
        return TunnelProblem("This ngrok account already has an agent running somewhere else (the free "
                             "plan allows one at a time): stop that one, then start the tunnel again.",
                             permanent=True)
    if domain and ("domain" in lowered or "hostname" in lowered):
        return TunnelProblem(f"ngrok would not give this tunnel the domain {domain}: check it under "
                             "Domains at dashboard.ngrok.com (it must belong to this account), or leave the "
                             f"domain empty for a random address. (ngrok said: {text})", permanent=True)
    if "tcp connection" in lowered or "dns" in lowered or "timed out" in lowered or "connect" in lowered:
        return TunnelProblem(f"Cannot reach ngrok's service; is this PC online? ({text})")
    return TunnelProblem(f"ngrok: {text}")


class NgrokTunnel(Tunnel):
    server_addr: ClassVar[str | None] = None  # ngrok's own service; a local address in tests

    def __init__(self, spec: TunnelSpec, *, authtoken: str | None = None,
                 server_addr: str | None = None) -> None:
        self.spec = spec
        self.authtoken = authtoken
        self.address = server_addr or self.server_addr
        self.session: Any = None
        self.listener: Any = None
        self._events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._calls: set[asyncio.Future[Any]] = set()

    def builder(self, sdk: Any, token: str) -> Any:
        """The SDK's SessionBuilder with our token, name and callbacks (they run on the SDK's own threads,
        so they only hand the news to this loop)."""
        loop = asyncio.get_running_loop()

        def tell(kind: str, detail: str = "") -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening any more
                loop.call_soon_threadsafe(self._events.put_nowait, (kind, detail))

        builder = (sdk.SessionBuilder().authtoken(token).client_info("voka-bridge", __version__)
                   .handle_disconnection(lambda _addr, error: tell("down", str(error)))
                   .handle_heartbeat(lambda _latency: tell("up"))
                   .handle_stop_command(lambda: tell("stop")))
        if self.address:
            builder = builder.server_addr(self.address)
        return builder

    async def open(self, progress: Progress) -> str:
        try:
            import ngrok as sdk
        except ImportError:
            raise TunnelProblem("The ngrok package is not installed here (pip install ngrok); choose "
                                "Cloudflare instead, or reinstall Voka Bridge.", permanent=True) from None
        loop = asyncio.get_running_loop()
        token = self.authtoken or await loop.run_in_executor(None, secrets.read, "ngrok")
        if not token:
            raise TunnelProblem(MISSING_TOKEN, permanent=True)
        progress("Connecting to ngrok…", None)
        try:
            self.session = await self._call(self.builder(sdk, token).connect())
            endpoint = self.session.http_endpoint()
            if self.spec.domain:
                endpoint = endpoint.domain(self.spec.domain)
            self.listener = await self._call(endpoint.listen_and_forward(self.spec.target))
        except (ValueError, RuntimeError, OSError) as exc:
            raise explain(exc, self.spec.domain) from None
        url = str(self.listener.url())
        return url if "://" in url else f"https://{url}"

    async def wait(self, health: Health) -> str:
        up = True
        while True:
            kind, detail = await self._events.get()
            if kind == "stop":
                raise TunnelProblem("The tunnel was stopped from the ngrok dashboard; start it again here "
                                    "when you want it back.", permanent=True)
            if kind == "down":
                problem = explain(detail, self.spec.domain)
                if problem.permanent:
                    raise problem
                if up:
                    up = False
                    health(False, f"ngrok lost its connection and is reconnecting ({redact(detail)}).")
            elif kind == "up" and not up:
                up = True
                health(True, "")

    async def _call(self, awaitable: Any) -> Any:
        """An SDK call, never abandoned half-way: cancelling us leaves it running to its end (close()
        waits for it), so the SDK's native side never completes a call into an event loop that is gone."""
        future = asyncio.ensure_future(awaitable)
        self._calls.add(future)
        return await asyncio.shield(future)

    async def close(self) -> None:
        late: list[Any] = []
        calls, self._calls = self._calls, set()
        if calls:  # a start cancelled mid-call: let the call end, then undo what it made
            done, _ = await asyncio.wait(calls, timeout=10)
            late = [f.result() for f in done if not f.cancelled() and f.exception() is None]
        listener, session, self.listener, self.session = self.listener, self.session, None, None
        for closing in (listener, *[r for r in late if r is not listener and r is not session], session):
            if closing is not None:
                try:
                    await closing.close()
                except Exception as exc:  # already gone with the connection; nothing left to stop
                    log.debug("closing the ngrok %s: %s", type(closing).__name__, exc)
