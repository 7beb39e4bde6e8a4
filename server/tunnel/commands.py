"""`voka-bridge tunnel start|stop|status|token` (registered by server/cli.py), and the one line
`voka-bridge serve` prints when its tunnel is up."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from typing import Any

from server.config import TUNNEL_PROVIDERS, ConfigError, load_config
from server.config_edit import write_settings
from server.events import TunnelChanged
from server.paths import Paths, resolve_paths
from server.secretstore import KeyringUnavailable
from server.tunnel import LABELS, secrets
from server.tunnel.manager import tunnel_settings
from server.tunnel.status import STATUS_FILE, StatusFile, live, read_config

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
The managed tunnel gives this PC a public HTTPS address for Voka AI, with nothing to run by hand:
  ngrok             the ngrok agent inside Voka Bridge; needs your authtoken (free account). With
                    --domain set to the account's free reserved domain the address never changes:
                    the recommended choice.
  cloudflare-quick  no account; a random *.trycloudflare.com address that changes at every start
                    (then update it in Voka), for trying things out.
  cloudflare-named  your Cloudflare tunnel's token, and --domain the public host name you gave it at
                    Cloudflare (whose service must be http://127.0.0.1:<[server] port + 1>, or
                    [tunnel] ingress_port).
cloudflared is used from PATH, or downloaded once from Cloudflare's release and checked. Tokens live
only in the OS keyring (`tunnel token`); config.toml keeps [tunnel] provider and domain."""

START_HELP = """\
Saves [tunnel] provider (and domain) in config.toml. A server running on this home (`voka-bridge
serve`, or the desktop app) notices within a few seconds and starts the tunnel; this command waits for
it and prints the public URL. With no server running, the next `voka-bridge serve` starts it. Run it
again to retry a tunnel that failed (after storing its token, say)."""

STOP_HELP = """\
Clears [tunnel] provider in config.toml (the domain stays for next time); a running server stops its
tunnel within a few seconds."""

STATUS_HELP = """\
The tunnel config.toml asks for and, when a server runs on this home, the tunnel's state and public URL
(from the data folder's tunnel.json, which the running server keeps current)."""

TOKEN_HELP = """\
Stores the ngrok authtoken or the Cloudflare tunnel token in the OS keyring (service voka-bridge), read
from the terminal without echo, or from standard input. Never written to a file or shown again."""


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               add_home: Callable[[argparse.ArgumentParser], None]) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    tunnel = sub.add_parser("tunnel", help="the managed tunnel that lets Voka AI reach this PC",
                            description=DESCRIPTION, formatter_class=formatter)
    tunnel_sub = tunnel.add_subparsers(dest="tunnel_command", required=True)
    start = tunnel_sub.add_parser("start", help="turn the tunnel on", description=START_HELP,
                                  formatter_class=formatter)
    start.add_argument("--provider", choices=[p for p in TUNNEL_PROVIDERS if p],
                       help="default: the one in config.toml")
    start.add_argument("--domain", help="ngrok: your reserved domain; cloudflare-named: the tunnel's public "
                                        "host name (default: the one in config.toml)")
    start.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                       help="how long to wait for a running server's tunnel (default 60; 0: do not wait)")
    add_home(start)
    stop = tunnel_sub.add_parser("stop", help="turn the tunnel off", description=STOP_HELP,
                                 formatter_class=formatter)
    stop.add_argument("--wait", type=float, default=15.0, metavar="SECONDS")
    add_home(stop)
    status = tunnel_sub.add_parser("status", help="provider, state and public URL", description=STATUS_HELP,
                                   formatter_class=formatter)
    add_home(status)
    token = tunnel_sub.add_parser("token", help="store the ngrok authtoken or the Cloudflare tunnel token",
                                  description=TOKEN_HELP, formatter_class=formatter)
    token.add_argument("kind", choices=["ngrok", "cloudflare"])
    token.add_argument("--delete", action="store_true", help="remove the stored token instead")
    add_home(token)


def run(args: argparse.Namespace) -> int:
    paths = resolve_paths(args.home)
    try:
        if args.tunnel_command == "token":
            return _token(args.kind, args.delete)
        if args.tunnel_command == "status":
            return _status(paths)
        if args.tunnel_command == "stop":
            return _stop(paths, args.wait)
        return _start(paths, args.provider, args.domain, args.wait)
    except ConfigError as exc:
        return _fail(str(exc))


def _fail(message: str, code: int = EXIT_FAIL) -> int:
    print(f"voka-bridge: {message}", file=sys.stderr)
    return code


def _start(paths: Paths, provider: str | None, domain: str | None, wait: float) -> int:
    configured = load_config(paths.config_file).tunnel
    provider = provider or configured.provider
    if not provider:
        return _fail("which tunnel? Give --provider ngrok, cloudflare-quick or cloudflare-named", EXIT_USAGE)
    wanted = tunnel_settings(provider, configured.domain if domain is None else domain)
    paths.ensure()
    saved = write_settings(paths.config_file, {"tunnel": {"provider": wanted.provider,
                                                          "domain": wanted.domain}}).tunnel
    print(f"Saved in {paths.config_file}: [tunnel] provider = {saved.provider!r}"
          + (f", domain = {saved.domain!r}" if saved.domain else ""))
    if saved.provider in ("ngrok", "cloudflare-named"):
        kind = secrets.secret_kind(saved.provider)
        if not secrets.stored(kind):
            print(f"Note: no {secrets.NAMES[kind]} is stored yet; store it with "
                  f"`voka-bridge tunnel token {kind}`, then run this again.")
    status_file = StatusFile(paths.data_dir / STATUS_FILE)
    if not live(status_file.read()):
        print("No server is running on this home: `voka-bridge serve` starts the tunnel (the desktop app "
              "does too).")
        return EXIT_OK
    if wait <= 0:
        print("The running server starts it within a few seconds; see `voka-bridge tunnel status`.")
        return EXIT_OK
    data = _wait_for(status_file, paths, wait, lambda d: d.get("provider") == saved.provider
                     and d.get("state") in ("up", "failed"))
    if data is None:
        print("The tunnel is still starting; see `voka-bridge tunnel status`.")
        return EXIT_OK
    if data.get("state") == "failed":
        return _fail(f"the tunnel failed: {data.get('message')}")
    print(f"public URL {data.get('public_url')}")
    if data.get("url_changed"):
        print("The address changed since last time: update it in Voka AI.")
    return EXIT_OK


def _stop(paths: Paths, wait: float) -> int:
    if paths.config_file.exists():
        write_settings(paths.config_file, {"tunnel": {"provider": ""}})
    print(f"Saved in {paths.config_file}: no tunnel.")
    status_file = StatusFile(paths.data_dir / STATUS_FILE)
    if live(status_file.read()) and wait > 0:
        data = _wait_for(status_file, paths, wait, lambda d: d.get("state") == "stopped")
        print("The running server stopped its tunnel." if data is not None
              else "The running server has not stopped its tunnel yet; see `voka-bridge tunnel status`.")
    return EXIT_OK


def _wait_for(status_file: StatusFile, paths: Paths, seconds: float,
              done: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """Wait until the running server has applied the config.toml just written and `done` holds."""
    wanted = read_config(paths.config_file)[0]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = status_file.read()
        if data.get("applied") == wanted and done(data):
            return data
        time.sleep(0.2)
    return None


def _status(paths: Paths) -> int:
    configured = load_config(paths.config_file).tunnel
    data = StatusFile(paths.data_dir / STATUS_FILE).read()
    label = LABELS.get(configured.provider, "none")
    print(f"provider    {label} ({configured.provider or 'off'} in config.toml)")
    if configured.domain:
        print(f"domain      {configured.domain}")
    if not live(data):
        print("state       no server is running on this home")
        return EXIT_OK
    print(f"state       {data.get('state')}" + (f" ({data.get('provider')})" if data.get("provider") else ""))
    if data.get("public_url"):
        print(f"public URL  {data['public_url']}")
    if data.get("ingress"):
        print(f"forwards to {data['ingress']}")
    if data.get("message"):
        print(f"message     {data['message']}")
    return EXIT_OK


def _token(kind: str, delete: bool) -> int:
    name = secrets.NAMES[kind]
    try:
        if delete:
            secrets.delete(kind)
            print(f"Removed the stored {name}.")
            return EXIT_OK
        text = (getpass.getpass(f"{name[0].upper()}{name[1:]}: ") if sys.stdin.isatty()
                else sys.stdin.readline())
        secrets.store(kind, text)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except KeyringUnavailable as exc:
        return _fail(f"{exc} (The tunnel also reads {secrets.ENV_VARS[kind]} from the environment.)")
    provider = "ngrok" if kind == "ngrok" else "cloudflare-named"
    print(f"Stored the {name} in the OS keyring (service voka-bridge). Start the tunnel with "
          f"`voka-bridge tunnel start --provider {provider}`.")
    return EXIT_OK


class PublicUrlPrinter:
    """`serve` prints `public URL https://…` when its tunnel is up (again after an address change), after
    its `listening on` line."""

    def __init__(self) -> None:
        self.ready = False
        self.printed = ""
        self.pending = ""

    def __call__(self, event: object) -> None:
        if isinstance(event, TunnelChanged) and event.state == "up" and event.public_url:
            self.pending = event.public_url
            self.flush()

    def announced(self) -> None:
        self.ready = True
        self.flush()

    def flush(self) -> None:
        if self.ready and self.pending and self.pending != self.printed:
            self.printed = self.pending
            print(f"public URL {self.printed}", flush=True)
