"""`voka-bridge`: serve, keys, check, gui (DESIGN section 5)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import errno
import json
import math
import shlex
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from server import __version__, eventloop, tls
from server.bridge import Bridge
from server.catalog import Catalog
from server.config import Config, ConfigError, load_config
from server.db import open_database
from server.db.base import Database
from server.errors import BridgeError
from server.events import TunnelChanged
from server.host import ServerHost, certificate_for, site_url, ssl_context_for
from server.keys import SCOPES, ApiKey, KeyProblem, KeyStore, Principal, parse_scopes
from server.launch import first_call, first_run_keys, prepare
from server.logs import setup_logging
from server.paths import Paths, resolve_paths
from server.secretstore import KeyringUnavailable
from server.state import connect_state
from server.tls import CertificateInfo
from server.tool_test import SqlProblem, check_catalog
from server.tunnel import commands as tunnel_commands
from server.webhooks import commands as webhook_commands

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", metavar="DIR", help="keep everything under DIR (portable mode)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voka-bridge",
                                     description="Connect your shop's database to Voka AI.")
    parser.add_argument("--version", action="version", version=f"voka-bridge {__version__}")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the server headless")
    serve.add_argument("--demo", action="store_true", help="serve the bundled demo database and catalog")
    serve.add_argument("--host", help="bind address (default from config.toml, else 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (default from config.toml, else 3000)")
    serve.add_argument("--config", metavar="FILE", help="config.toml to use")
    serve.add_argument("--workers", type=_worker_count, default=1, metavar="N",
                       help="serve with N processes sharing the port (Linux/macOS; default 1)")
    _add_home(serve)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it alone on the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="query,action", help=f"comma-separated: {','.join(SCOPES)}")
    create.add_argument("--tools", help="comma-separated tool names this key may use (default: all)")
    create.add_argument("--rate-limit", type=int, help="requests per window for this key")
    create.add_argument("--expires-days", type=_positive_days,
                        help="the key stops working after this many days (a number above 0)")
    _add_home(create)
    listing = keys_sub.add_parser("list", help="list keys (never their secrets)")
    _add_home(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key", metavar="ID_OR_NAME")
    _add_home(revoke)
    rename = keys_sub.add_parser("rename", help="give a key a new name (its secret stays the same)")
    rename.add_argument("key", metavar="ID_OR_NAME")
    rename.add_argument("new_name", metavar="NEW_NAME")
    _add_home(rename)
    rotate = keys_sub.add_parser("rotate", help="new secret; the old one works for a grace period")
    rotate.add_argument("key", metavar="ID_OR_NAME")
    rotate.add_argument("--grace", type=float, default=24.0, metavar="HOURS")
    _add_home(rotate)

    check = sub.add_parser("check", help="validate config and catalog, and reach the database")
    check.add_argument("--config", metavar="FILE")
    _add_home(check)

    _add_db_parser(sub)

    _add_tls_parser(sub)

    tunnel_commands.add_parser(sub, _add_home)

    webhook_commands.add_parser(sub, _add_home)

    gui = sub.add_parser("gui", help="start the desktop app (the default)")
    gui.add_argument("--port", type=_port)
    _add_home(gui)
    return parser


def _number(convert: Callable[[str], float], low: float, high: float, what: str
            ) -> Callable[[str], float]:
    """An argparse type: a number from `low` to `high` (finite), refused in one line that says why."""
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r}: give {what} from {low:g} to {high:g}")
        return value

    return parse


# --workers; --port (0 lets the system choose); --expires-days (0 once meant 'never', nan a traceback)
_worker_count = _number(int, 1, 1024, "a whole number of processes")
_port = _number(int, 0, 65535, "a port number")
_positive_days = _number(float, 1 / 1440, 36500, "a number of days (leave the option out for a key "
                                                 "that does not expire)")


def _fail(message: str, code: int = EXIT_FAIL) -> int:
    print(f"voka-bridge: {message}", file=sys.stderr)
    return code


NOT_KEPT = ("There is no usable OS keyring here, so only its hash is stored and this is the only time it "
            "is shown.")


def _where_kept(record: ApiKey) -> str:
    """Whether the owner can get the new secret again (keyring) or must copy it now (hash only)."""
    return "It is kept in your OS keyring." if record.secret_kept else NOT_KEPT


def _announce(url: str, first: tuple[ApiKey, str] | None, certificate: CertificateInfo | None,
              catalog: Catalog) -> None:
    """What `serve` prints once it accepts requests, ending with the one "listening on" line."""
    if first:
        record, first_key = first
        print(f"Created an API key {record.name!r} (id {record.id}) that may run your tools (not raw SQL). "
              f"{_where_kept(record)} Copy it now:\n  {first_key}")
        local = url.replace("0.0.0.0", "127.0.0.1")
        body = first_call(catalog, record.scopes)
        if body is not None:  # a call this key may make, so the first thing pasted works
            print("Try it:\n  curl -X POST " + local + "/query -H \"Content-Type: application/json\" "
                  f"-H \"x-api-key: {first_key}\" -d {shlex.quote(json.dumps(body))}")
    if certificate is not None:
        print(f"TLS certificate {certificate.cert_path}\n"
              f"  SHA-256 fingerprint {certificate.fingerprint}")
    print(f"listening on {url}", flush=True)


async def _serve(bridge: Bridge, first: tuple[ApiKey, str] | None, config_file: str | None = None) -> int:
    host = ServerHost(bridge)
    if config_file:  # the tunnel follows [tunnel] changes in the config file actually served
        host.tunnels.config_file = Path(config_file)
    public_url = tunnel_commands.PublicUrlPrinter()  # "public URL https://…" once the tunnel is up
    bridge.events.subscribe(public_url, TunnelChanged)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    url = await host.start()
    _announce(url, first, host.certificate, bridge.catalog)
    public_url.announced()
    try:
        await stop.wait()
    finally:
        await host.stop()
    return EXIT_OK


def _serve_workers(paths: Paths, config: Config, url: str, static: list[tuple[str, Principal]],
                   first: tuple[ApiKey, str] | None, workers: int) -> int:
    """`serve --workers N`: checked here as a single process would be, then served by N processes."""
    from server.workers import Plan, WorkersFailed, serve_workers

    certificate = certificate_for(config, paths.data_dir / tls.FOLDER)
    ssl_context_for(config, certificate)  # refuses plain HTTP off loopback before anything binds
    catalog = Catalog.load(paths.tools_file)
    plan = Plan(paths, config, url, static, workers)
    try:
        return serve_workers(plan, lambda port: _announce(
            site_url(config, port, tls=certificate is not None), first, certificate, catalog))
    except WorkersFailed as exc:
        return _fail(f"cannot serve with {workers} workers: {exc}")


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers > 1 and sys.platform == "win32":
        return _fail("--workers above 1 needs Linux or macOS; on Windows the server runs as one process "
                     "(leave out --workers)", EXIT_USAGE)
    paths = resolve_paths(args.home)
    try:
        config, url = prepare(paths, args.config, demo=args.demo)
        if args.host:
            config.server.host = args.host
        if args.port is not None:
            config.server.port = args.port
        setup_logging(paths.log_dir, config.logging, console=True, rotate=args.workers == 1)
        static, first = first_run_keys(paths)
        if args.workers > 1:
            if config.tunnel.provider:
                return _fail("the managed tunnel runs with one server process: leave out --workers, or "
                             "clear [tunnel] provider (`voka-bridge tunnel stop`) and run a tunnel yourself "
                             "with [server] trust_forwarded_for", EXIT_USAGE)
            return _serve_workers(paths, config, url, static, first, args.workers)
        bridge = Bridge(paths, config, database_url=url, static_keys=static)
        return eventloop.run(_serve(bridge, first, args.config))
    except ConfigError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _fail(f"cannot start the server: the port is already in use ({exc.strerror}). Is another "
                         "Voka Bridge (or another program) running on it? Stop it, or choose another port "
                         "with --port (or [server] port in config.toml).")
        return _fail(f"cannot start the server: {exc.strerror or exc}")


def _print_key_table(store: KeyStore) -> None:
    keys = store.all()
    if not keys:
        print("No keys yet. Create one with: voka-bridge keys create --name NAME")
        return
    header = f"{'ID':<12}  {'NAME':<20}  {'SCOPES':<18}  {'STATUS':<9}  {'USES':>6}  LAST USED"
    print(header)
    for key in keys:
        last = key.last_used_at.isoformat() if key.last_used_at else "never"
        print(f"{key.id:<12}  {key.name[:20]:<20}  {','.join(key.scopes):<18}  {key.status:<9}  "
              f"{key.use_count:>6}  {last}")


def cmd_keys(args: argparse.Namespace) -> int:
    paths = resolve_paths(args.home)
    paths.ensure()
    try:
        conn = connect_state(paths.state_db)
    except sqlite3.Error as exc:
        return _fail(f"cannot open {paths.state_db}: {exc}")
    store = KeyStore(conn)
    try:
        if args.keys_command == "list":
            _print_key_table(store)
        elif args.keys_command == "create":
            tools = tuple(t.strip() for t in args.tools.split(",") if t.strip()) if args.tools else None
            expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=args.expires_days)
                       if args.expires_days else None)
            record, secret = store.create(args.name, parse_scopes(args.scopes), tools=tools,
                                          rate_limit=args.rate_limit, expires_at=expires)
            print(f"Created key {record.name!r} (id {record.id}, scopes {','.join(record.scopes)}). "
                  f"{_where_kept(record)} Copy it now:")
            print(secret)
        elif args.keys_command == "revoke":
            record = store.revoke(args.key)
            print(f"Revoked key {record.name!r} (id {record.id}); it stops working at once.")
        elif args.keys_command == "rename":
            old_name = store.find(args.key).name
            record = store.rename(args.key, args.new_name)
            print(f"Renamed key {old_name!r} to {record.name!r} (id {record.id}); its secret is unchanged.")
        elif args.keys_command == "rotate":
            record, secret = store.rotate(args.key, args.grace)
            until = (f"until {record.old_expires_at.isoformat()}" if record.old_expires_at
                     else "no longer (no grace period)")
            print(f"Rotated key {record.name!r} (id {record.id}); the old secret works {until}. "
                  f"{_where_kept(record)} New key:")
            print(secret)
    except KeyProblem as exc:
        return _fail(str(exc))
    finally:
        conn.close()
    return EXIT_OK


async def _check_database(config: Config, url: str, base_dir: Path, catalog: Catalog | None = None
                          ) -> tuple[str, list[SqlProblem]]:
    """Reach the database, then have it prepare every tool's SQL (running none): a tool it does not
    accept would only fail when Voka calls it."""
    db = open_database(config.database, url=url, base_dir=base_dir)
    await db.open()
    try:
        await db.ping()
        tables = await db.schema()
        problems = (await check_catalog(db, catalog, timeout=config.limits.query_timeout_seconds)
                    if catalog is not None else [])
    finally:
        await db.close()
    return f"{db.describe()}: reachable, {len(tables)} table(s)" + _role_advice(db, config, catalog), problems


def _role_advice(db: Database, config: Config, catalog: Catalog | None) -> str:
    """PostgreSQL: warn about a role that can do more than the shop's tables, and print a safer one."""
    from server.db.pgsafety import RoleReport, least_privilege_sql, written_tables

    role = getattr(db, "role", None)
    if not isinstance(role, RoleReport) or not role.privileged:
        return ""
    lines = [f"warning: the database role {role.name!r} {power}" for power in role.powers()]
    lines.append("raw SQL through this role is " + (
        "ALLOWED ([database] allow_privileged_role = true)" if config.database.allow_privileged_role
        else "refused until you connect with a least-privilege role "
             "(or set [database] allow_privileged_role = true)"))
    action_sql = [step.sql_for(db.engine) for tool in (catalog or []) if tool.kind == "action"
                  for step in tool.steps]
    lines.append("A least-privilege role for Voka Bridge:")
    lines.append(least_privilege_sql(role.database, written_tables(action_sql)))
    return "\n" + "\n".join(lines)


def _add_db_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = sub.add_parser("db", help="the database connection")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    setpw = db_sub.add_parser("set-password", help="store the PostgreSQL password in the OS keyring "
                                                   "(read from the terminal, or from standard input)")
    setpw.add_argument("--url", help="postgresql:// URL (default: [database] url in config.toml)")
    setpw.add_argument("--config", metavar="FILE")
    setpw.add_argument("--delete", action="store_true", help="remove the stored password instead")
    _add_home(setpw)


def cmd_db(args: argparse.Namespace) -> int:
    """`voka-bridge db set-password`: the one way the database password gets stored (never in a file)."""
    import getpass

    from server.db.postgres import parse_url
    from server.secretstore import SecretStore

    paths = resolve_paths(args.home)
    try:
        url = args.url or load_config(Path(args.config) if args.config else paths.config_file).database.url
    except ConfigError as exc:
        return _fail(str(exc))
    if not url.startswith(("postgresql:", "postgres:")):
        return _fail("set-password is for a PostgreSQL database: set [database] url = "
                     "\"postgresql://USER@HOST:5432/DB\" in config.toml, or pass --url")
    target = parse_url(url)
    who = f"{target.user}@{target.host}:{target.port}/{target.database}"
    try:
        if args.delete:
            SecretStore().delete(target.keyring_account)
            print(f"Removed the stored password for {who}.")
            return EXIT_OK
        password = (getpass.getpass(f"Password for {who}: ") if sys.stdin.isatty()
                    else sys.stdin.readline().rstrip("\r\n"))
        if not password:
            return _fail("no password given; nothing stored", EXIT_USAGE)
        SecretStore().set(target.keyring_account, password)
    except KeyringUnavailable as exc:
        return _fail(str(exc))
    print(f"Stored the password for {who} in the OS keyring (service voka-bridge). "
          "Run `voka-bridge check` to try it.")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    paths = resolve_paths(args.home)
    try:
        if args.config and not Path(args.config).is_file():
            raise ConfigError(f"{args.config}: no such file (given with --config)")
        config_file = Path(args.config) if args.config else paths.config_file
        configured = load_config(config_file)
        config, url = prepare(paths, args.config, demo=not configured.database.url)
        catalog = Catalog.load(paths.tools_file)
        print(f"config: ok ({config_file})" if config_file.exists() else
              f"config: none yet ({config_file} does not exist), so every setting is its default")
        reached, problems = asyncio.run(_check_database(config, url, paths.config_dir, catalog))
        print("database: " + reached)
    except ConfigError as exc:
        return _fail(str(exc))
    except BridgeError as exc:
        return _fail(f"database: {exc.detail}")
    if problems:
        broken = len({problem.tool for problem in problems})
        return _fail(f"catalog: {broken} of {len(catalog)} tool(s) in {paths.tools_file} do not work with "
                     "this database (Voka gets an error when it calls them):\n"
                     + "\n".join(f"  {problem.tool}: {problem}" for problem in problems))
    print(f"catalog: ok, {len(catalog)} tool(s), each prepared on the database without running it "
          f"({paths.tools_file})")
    return EXIT_OK


GuiRunner = Callable[..., int]


def _gui_unavailable(home: str | None = None, port: int | None = None) -> int:
    """What `gui` does when the server's own entry point runs (`python -m server.cli`): no Qt here."""
    return _fail("the desktop app starts from `voka-bridge` (or `python -m app`); "
                 "use `voka-bridge serve` for a headless server")


def _add_tls_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tls_parser = sub.add_parser("tls", help="HTTPS certificate (self-signed, for serving off loopback)")
    tls_sub = tls_parser.add_subparsers(dest="tls_command", required=True)
    generate = tls_sub.add_parser("generate", help="make a new self-signed certificate")
    generate.add_argument("--name", action="append", default=[], metavar="HOST",
                          help="a host name or address clients use (repeatable; localhost is always in)")
    _add_home(generate)
    show = tls_sub.add_parser("fingerprint", help="show the SHA-256 fingerprint of the certificate in use")
    show.add_argument("--config", metavar="FILE")
    _add_home(show)


def cmd_tls(args: argparse.Namespace) -> int:
    """`voka-bridge tls generate|fingerprint`: the certificate and the fingerprint callers can pin."""
    paths = resolve_paths(args.home)
    folder = paths.data_dir / tls.FOLDER
    try:
        if args.tls_command == "generate":
            info = tls.generate(folder, tls.default_names(args.name))
            print(f"Created a self-signed certificate for {', '.join(info.names)}")
            print(f"  {info.cert_path}\n  valid until {info.not_after:%Y-%m-%d}")
            print("Serve HTTPS with it: set tls_self_signed = true under [server] in config.toml")
        else:
            config = load_config(Path(args.config) if args.config else paths.config_file)
            found = certificate_for(config, None) if config.server.tls_cert else None
            if found is None and (folder / tls.CERT_FILE).is_file():
                found = tls.describe(folder / tls.CERT_FILE, folder / tls.KEY_FILE)
            if found is None:
                return _fail("no certificate yet: run `voka-bridge tls generate`, or set [server] "
                             "tls_cert and tls_key in config.toml")
            info = found
            print(info.cert_path)
        print(f"SHA-256 fingerprint {info.fingerprint}")
    except (ConfigError, tls.TlsProblem) as exc:
        return _fail(str(exc))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, gui: GuiRunner = _gui_unavailable) -> int:
    """The `voka-bridge` command line. The desktop app's launcher (app/main.py) passes `gui`, so the
    server package never imports the app (DESIGN section 3)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *(argv or sys.argv[1:])])
    if args.command == "gui":
        return gui(home=args.home, port=args.port)
    handlers = {"serve": cmd_serve, "keys": cmd_keys, "check": cmd_check, "db": cmd_db, "tls": cmd_tls,
                "tunnel": tunnel_commands.run, "webhooks": webhook_commands.run}
    return handlers[args.command](args)

if __name__ == "__main__":
    sys.exit(main())
