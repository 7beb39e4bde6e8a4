"""A stand-in for the `cloudflared` program, at the process boundary: no tunnel can reach the internet here.

It takes the same arguments as the real one (`tunnel --no-autoupdate [--config F] --metrics H:P
(--url URL | run)`, the token in TUNNEL_TOKEN), serves the same metrics endpoints (`/ready`,
`/quicktunnel`), and plays Cloudflare's edge on a loopback port of its own: every request there is
forwarded to the origin with CF-Connecting-IP and X-Forwarded-For set, the public Host kept. A quick
tunnel gets a new random *.trycloudflare.com name at every start. Its log prints a wrong address on
purpose: whoever reads the address from the log gets it wrong.

Environment:
  FAKE_CLOUDFLARED_DIR       each run writes run-N.json there (its argv, TUNNEL_TOKEN, pid, public port,
                             host name); a file `die` there makes the running fake exit with status 1
                             (the file is removed first); while a file `unready` exists, /ready says 503
  FAKE_CLOUDFLARED_ORIGIN    a named tunnel's origin (at Cloudflare, set in the dashboard)
  FAKE_CLOUDFLARED_HOSTNAME  a named tunnel's public host name
  FAKE_CLOUDFLARED_CLIENT    the internet caller's address (default 198.51.100.23)
  FAKE_CLOUDFLARED_DELAY     seconds before it reports a connection to the edge (default 0.3)
  FAKE_CLOUDFLARED_REFUSE    set: a named tunnel's token is refused, as Cloudflare refuses a wrong one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from aiohttp import web

from tests.server.tunnel.relay import cloudflare_headers, relay_app, serve

DEFAULT_CLIENT = "198.51.100.23"
LOG_DECOY = "https://read-from-the-log-is-wrong.trycloudflare.com"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cloudflared")
    parser.add_argument("command", choices=["tunnel"])
    parser.add_argument("--no-autoupdate", action="store_true")
    parser.add_argument("--config")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--url")
    parser.add_argument("--token")  # the real one takes it too; the bridge must never use it
    parser.add_argument("subcommand", nargs="?", choices=["run"])
    return parser.parse_intermixed_args(argv)


async def main(argv: list[str]) -> int:
    args = parse(argv)
    state = Path(os.environ["FAKE_CLOUDFLARED_DIR"])
    named = args.subcommand == "run"
    token = os.environ.get("TUNNEL_TOKEN", "")
    if named and not (token or args.token):
        print("ERR cloudflared: no tunnel token", file=sys.stderr, flush=True)
        return 1
    if named and os.environ.get("FAKE_CLOUDFLARED_REFUSE"):
        print("ERR Provided Tunnel token is not valid.", file=sys.stderr, flush=True)
        return 1
    if not named and not args.url:
        print("ERR cloudflared: --url is required for a quick tunnel", file=sys.stderr, flush=True)
        return 1
    origin = os.environ.get("FAKE_CLOUDFLARED_ORIGIN", "") if named else args.url
    hostname = (os.environ.get("FAKE_CLOUDFLARED_HOSTNAME", "") if named
                else f"{secrets.token_hex(5)}-fake.trycloudflare.com")
    client = os.environ.get("FAKE_CLOUDFLARED_CLIENT", DEFAULT_CLIENT)
    delay = float(os.environ.get("FAKE_CLOUDFLARED_DELAY", "0.3"))

    edge, public_port = await serve(relay_app(origin.rstrip("/"), cloudflare_headers, client, hostname))
    started = asyncio.get_running_loop().time()

    def connected() -> bool:
        return asyncio.get_running_loop().time() - started >= delay and not (state / "unready").exists()

    async def ready(_request: web.Request) -> web.Response:
        count = 4 if connected() else 0
        return web.json_response({"status": 200 if count else 503, "readyConnections": count,
                                  "connectorId": "fake-connector"}, status=200 if count else 503)

    async def quicktunnel(_request: web.Request) -> web.Response:
        return web.json_response({"hostname": "" if named or not connected() else hostname})

    metrics_app = web.Application()
    metrics_app.router.add_get("/ready", ready)
    metrics_app.router.add_get("/quicktunnel", quicktunnel)
    metrics = web.AppRunner(metrics_app, handle_signals=False)
    await metrics.setup()
    host, port = args.metrics.rsplit(":", 1)
    await web.TCPSite(metrics, host, int(port)).start()

    runs = sorted(state.glob("run-*.json"))
    record = {"argv": argv, "token_env": token, "pid": os.getpid(), "public_port": public_port,
              "hostname": hostname, "metrics": args.metrics, "config": args.config}
    (state / f"run-{len(runs) + 1:03d}.json").write_text(json.dumps(record))
    print(f"INF Starting tunnel; your quick Tunnel has been created! Visit it at {LOG_DECOY}",
          file=sys.stderr, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    while not stop.is_set():
        die = state / "die"
        if die.exists():
            die.unlink(missing_ok=True)
            print("ERR fake cloudflared was told to die", file=sys.stderr, flush=True)
            code = 1
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    await metrics.cleanup()
    await edge.cleanup()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
