"""Cloudflare Tunnel through a `cloudflared` child process: a quick tunnel (no account; a random
*.trycloudflare.com address that changes at every start) or a named one (a token from the owner's
Cloudflare account; the public host name is set for the tunnel at Cloudflare and given as [tunnel] domain).

The public address and the connection state come from cloudflared's metrics server (`--metrics`), never
from its log: `GET /ready` (200 with readyConnections once connected to Cloudflare's edge, 503 while it
reconnects) and, for a quick tunnel, `GET /quicktunnel` (`{"hostname": "xxx.trycloudflare.com"}`). The
tunnel token reaches cloudflared through the TUNNEL_TOKEN environment variable, never its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp

from server.logs import redact
from server.tunnel import secrets
from server.tunnel.binary import find_or_download
from server.tunnel.provider import Health, Progress, Tunnel, TunnelProblem, TunnelSpec

log = logging.getLogger(__name__)

CONFIG_FILE = "cloudflared.yml"
CONFIG_TEXT = ("# Voka Bridge starts cloudflared with this file, so that a cloudflared configuration\n"
               "# of your own (~/.cloudflared/config.yml) cannot change the tunnel it runs.\n"
               "no-autoupdate: true\n")
MISSING_TOKEN = ("The named Cloudflare tunnel needs its token: in Cloudflare Zero Trust → Networks → "
                 "Tunnels, open your tunnel, copy the token (the long text starting with eyJ) and store it "
                 "with `voka-bridge tunnel token cloudflare` or in the app's tunnel settings.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cloudflared(Tunnel):
    named: ClassVar[bool] = False
    open_timeout: ClassVar[float] = 60.0  # to reach Cloudflare's edge and get an address
    poll_interval: ClassVar[float] = 0.25  # asking the metrics server while starting
    watch_interval: ClassVar[float] = 2.0  # asking it while running
    stop_timeout: ClassVar[float] = 5.0  # after SIGTERM, before the process is killed

    def __init__(self, spec: TunnelSpec, *, executable: Sequence[str] | None = None,
                 token: str | None = None, download_url: str | None = None) -> None:
        """`executable`: the command that runs cloudflared (default: found on PATH or downloaded)."""
        self.spec = spec
        self.executable = list(executable) if executable else None
        self.token = token
        self.download_url = download_url
        self.process: asyncio.subprocess.Process | None = None
        self.metrics = ""
        self._lines: deque[str] = deque(maxlen=20)
        self._drain: asyncio.Task[None] | None = None
        self._exit: asyncio.Task[int] | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---- start -----------------------------------------------------------------------------------
    async def open(self, progress: Progress) -> str:
        loop = asyncio.get_running_loop()
        if self.named and not self.token:
            self.token = await loop.run_in_executor(None, secrets.read, "cloudflare")
            if not self.token:
                raise TunnelProblem(MISSING_TOKEN, permanent=True)
        executable = self.executable or [str(await find_or_download(
            self.spec.work_dir, url=self.download_url, progress=lambda done, total: progress(
                _downloading(done, total), done / total if total else None)))]
        config = self.spec.work_dir / CONFIG_FILE
        await loop.run_in_executor(None, _write_config, config)
        port = free_port()
        self.metrics = f"http://127.0.0.1:{port}"
        command = [*executable, "tunnel", "--no-autoupdate", "--config", str(config),
                   "--metrics", f"127.0.0.1:{port}"]
        command += ["run"] if self.named else ["--url", self.spec.target]
        progress("Connecting to Cloudflare…", None)
        try:
            self.process = await asyncio.create_subprocess_exec(
                *command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env=self._environment(), **_detached())
        except OSError as exc:
            raise TunnelProblem(f"cloudflared ({executable[-1]}) cannot be started: {exc.strerror or exc}",
                                permanent=True) from None
        self._drain = loop.create_task(self._read_log(), name="cloudflared-log")
        self._exit = loop.create_task(self.process.wait(), name="cloudflared-exit")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        deadline = loop.time() + self.open_timeout
        while True:
            if self._exit.done():
                ended = await self._ended()
                if self.named and "token" in ended.lower() and ("not valid" in ended or "invalid" in ended):
                    raise TunnelProblem(f"Cloudflare refused the tunnel token: copy it again from Cloudflare "
                                        f"Zero Trust → Networks → Tunnels and store it again. ({ended})",
                                        permanent=True)
                raise TunnelProblem(ended)
            url = await self._public_url()
            if url:
                return url
            if loop.time() > deadline:
                raise TunnelProblem(f"cloudflared did not connect to Cloudflare within "
                                    f"{self.open_timeout:g} s{self._last_line()}; is this PC online?")
            await asyncio.sleep(self.poll_interval)

    def _environment(self) -> dict[str, str]:
        """This process's environment without cloudflared's own TUNNEL_* settings (they could change the
        tunnel), plus the named tunnel's token."""
        env = {name: value for name, value in os.environ.items() if not name.upper().startswith("TUNNEL_")}
        if self.named and self.token:
            env["TUNNEL_TOKEN"] = self.token
        return env

    async def _public_url(self) -> str:
        """The public address once cloudflared has a connection to Cloudflare's edge, else ""."""
        ready = await self._get("/ready")
        if ready is None or ready[0] != 200 or not _connections(ready[1]):
            return ""
        if self.named:
            return f"https://{self.spec.domain}"
        quick = await self._get("/quicktunnel")
        hostname = quick[1].get("hostname") if quick is not None and isinstance(quick[1], dict) else None
        return f"https://{hostname}" if isinstance(hostname, str) and hostname.strip() else ""

    async def _get(self, path: str) -> tuple[int, Any] | None:
        assert self._session is not None
        try:
            async with self._session.get(self.metrics + path) as response:
                try:
                    return response.status, await response.json(content_type=None)
                except ValueError:
                    return response.status, None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    # ---- running ---------------------------------------------------------------------------------
    async def wait(self, health: Health) -> str:
        assert self._exit is not None
        up = True
        while True:
            done, _ = await asyncio.wait({self._exit}, timeout=self.watch_interval)
            if done:
                return await self._ended()
            ready = await self._get("/ready")
            if ready is None:  # its metrics server is gone: it may be on its way out
                done, _ = await asyncio.wait({self._exit}, timeout=1.0)
                if done:
                    return await self._ended()
            now_up = ready is not None and ready[0] == 200 and _connections(ready[1])
            if now_up != up:
                up = now_up
                health(up, "" if up else "cloudflared lost its connection to Cloudflare and is reconnecting.")

    async def _read_log(self) -> None:
        """Keep cloudflared's last log lines for the message when it stops (never for its address)."""
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            line = redact(raw.decode("utf-8", "replace").rstrip())
            if line:
                self._lines.append(line)
                log.debug("cloudflared: %s", line)

    def _last_line(self) -> str:
        return f" (cloudflared said: {self._lines[-1][-300:]})" if self._lines else ""

    async def _ended(self) -> str:
        assert self.process is not None
        code = await self.process.wait()
        if self._drain is not None:  # its last words are in the pipe until it is read to the end
            await asyncio.wait({self._drain}, timeout=2)
        return f"cloudflared stopped (exit status {code}){self._last_line()}."

    # ---- stop ------------------------------------------------------------------------------------
    async def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            exited = asyncio.ensure_future(process.wait())
            done, _ = await asyncio.wait({exited}, timeout=self.stop_timeout)
            if not done:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await exited
        for task in (self._drain, self._exit):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._drain = self._exit = None
        if self._session is not None:
            await self._session.close()
            self._session = None


class CloudflareQuick(Cloudflared):
    named = False


class CloudflareNamed(Cloudflared):
    named = True


def _connections(body: Any) -> bool:
    count = body.get("readyConnections") if isinstance(body, dict) else None
    return isinstance(count, int) and count > 0


def _write_config(path: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != CONFIG_TEXT:
        path.write_text(CONFIG_TEXT, encoding="utf-8")


def _detached() -> dict[str, Any]:
    """cloudflared in a session of its own (a Ctrl-C in the terminal is for us; we stop it), and on
    Windows without a console window of its own."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _downloading(done: int, total: int | None) -> str:
    mb = 1024 * 1024
    of = f" of {total / mb:.0f}" if total else ""
    return f"Downloading cloudflared ({done / mb:.0f}{of} MB)…"
