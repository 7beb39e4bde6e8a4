"""A real webhook receiver for the tests: an aiohttp server on a real port, in a thread of its own (so
both async tests and tests driving `voka-bridge serve` processes can use it), that records every request
and answers as scripted: "ok" (200), "fail" (500) or "hang" (answers only after `hang_seconds`).

Signatures are checked here independently of server/webhooks/signing.py, from the Standard Webhooks v1
definition: base64(HMAC-SHA256(base64-decoded secret after `whsec_`, "{id}.{timestamp}.{body}")).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: str
    received_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def verify(secret: str, delivery: Delivery, tolerance: float = 300.0) -> bool:
    """Standard Webhooks v1 verification, written from the spec (not with the code under test)."""
    prefix, _, encoded = secret.partition("_")
    assert prefix == "whsec"
    key = base64.b64decode(encoded)
    message_id = delivery.headers["webhook-id"]
    timestamp = delivery.headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + delivery.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in delivery.headers["webhook-signature"].split(" ")
               if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


class Receiver:
    def __init__(self, port: int, script: list[str] | None = None, hang_seconds: float = 3.0) -> None:
        self.port = port
        self.script = list(script or [])  # one answer per request, then "ok"
        self.hang_seconds = hang_seconds
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/voka"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            answer = self.script.pop(0) if self.script else "ok"
            self.deliveries.append(Delivery({k.lower(): v for k, v in request.headers.items()}, body, answer))
        if answer == "hang":
            await asyncio.sleep(self.hang_seconds)
        return web.Response(status=500 if answer == "fail" else 200, text="")

    def start(self) -> Receiver:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/hooks/voka", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port,
                                                reuse_address=True).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def received(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def wait_for(self, condition: Callable[[list[Delivery]], bool], timeout: float = 15.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.received()
            if condition(seen):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"the receiver did not see what was expected within {timeout} s: "
                             f"{[(d.id, d.answered) for d in self.received()]}")

    async def await_for(self, condition: Callable[[list[Delivery]], bool], timeout: float = 15.0
                        ) -> list[Delivery]:
        return await asyncio.to_thread(self.wait_for, condition, timeout)
