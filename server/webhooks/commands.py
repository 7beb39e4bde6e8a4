"""`voka-bridge webhooks list|resend|secret|set-key` (registered by server/cli.py).

They work on the home's files directly, with or without a server running: a running server (or the
desktop app) picks up a resend within a second.
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from server.config import ConfigError, load_config
from server.paths import resolve_paths
from server.secretstore import KeyringUnavailable
from server.state import connect_state
from server.webhooks import admin, outbox, secrets

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Events chosen per action in tools.toml (events = ["order.created"]) are POSTed to [webhooks] url in
config.toml, signed with Standard Webhooks v1 headers (webhook-id, webhook-timestamp, webhook-signature)
and sent with Voka's API key as x-api-key. A failing delivery is retried with growing pauses for
[webhooks] max_age_hours (24), then kept as a dead letter until you resend it."""

LIST_HELP = """\
Messages not yet delivered: held (their action is being confirmed), pending (due, or waiting for a
retry) and dead letters, with attempts and the last error. --all adds delivered ones (kept 7 days)."""

RESEND_HELP = """\
Queue a dead letter (or a delivered message) for delivery again, under the same webhook-id, retried
for another [webhooks] max_age_hours. A running server sends it within a second."""

SECRET_HELP = """\
Shows the signing secret (whsec_...) that Voka needs to verify the signatures, creating it in the OS
keyring (service voka-bridge) the first time. It is printed alone on the last line."""

SET_KEY_HELP = """\
Stores the API key Voka gave you for its webhook endpoint in the OS keyring (read from the terminal
without echo, or from standard input); it is sent as x-api-key with every event."""


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               add_home: Callable[[argparse.ArgumentParser], None]) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    webhooks = sub.add_parser("webhooks", help="events sent to Voka AI: dead letters, resend, secrets",
                              description=DESCRIPTION, formatter_class=formatter)
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    listing = webhooks_sub.add_parser("list", help="pending messages and dead letters", description=LIST_HELP,
                                      formatter_class=formatter)
    listing.add_argument("--all", action="store_true", help="include delivered messages")
    add_home(listing)
    resend = webhooks_sub.add_parser("resend", help="send a dead letter again", description=RESEND_HELP,
                                     formatter_class=formatter)
    resend.add_argument("id", metavar="ID", help="the message's webhook-id (or its unambiguous start)")
    resend.add_argument("--config", metavar="FILE")
    add_home(resend)
    secret = webhooks_sub.add_parser("secret", help="show (and first create) the whsec_ signing secret",
                                     description=SECRET_HELP, formatter_class=formatter)
    add_home(secret)
    set_key = webhooks_sub.add_parser("set-key", help="store Voka's API key for webhooks in the keyring",
                                      description=SET_KEY_HELP, formatter_class=formatter)
    set_key.add_argument("--delete", action="store_true", help="remove the stored key instead")
    add_home(set_key)


def _fail(message: str, code: int = EXIT_FAIL) -> int:
    print(f"voka-bridge: {message}", file=sys.stderr)
    return code


def _print_list(messages: list[outbox.Message]) -> None:
    if not messages:
        print("No webhook messages waiting and no dead letters.")
        return
    print(f"{'ID':<36}  {'EVENT':<20}  {'STATUS':<9}  {'TRIES':>5}  {'CREATED (UTC)':<19}  DETAIL")
    for message in map(admin.row, messages):
        print(f"{message.id:<36}  {message.event[:20]:<20}  {message.status:<9}  {message.attempts:>5}  "
              f"{message.created:<19}  {message.detail}")


def run(args: argparse.Namespace) -> int:
    command = args.webhooks_command
    paths = resolve_paths(args.home)
    try:
        if command == "secret":
            secret = secrets.signing_secret(create=True)
            print("Voka verifies each event with this signing secret (Standard Webhooks); paste it where "
                  "Voka asks for the webhook secret. It is kept in your OS keyring.")
            print(secret)
            return EXIT_OK
        if command == "set-key":
            if args.delete:
                secrets.delete_voka_api_key()
                print("Removed Voka's webhook API key from the OS keyring.")
                return EXIT_OK
            value = (getpass.getpass("Voka's API key for webhooks: ") if sys.stdin.isatty()
                     else sys.stdin.readline().rstrip("\r\n"))
            if not value.strip():
                return _fail("no key given; nothing stored", EXIT_USAGE)
            secrets.set_voka_api_key(value)
            print("Stored Voka's API key in the OS keyring (service voka-bridge); every event carries it as "
                  "x-api-key.")
            return EXIT_OK
        paths.ensure()
        conn = connect_state(paths.state_db)
        try:
            if command == "list":
                statuses = [outbox.HELD, outbox.PENDING, outbox.DEAD]
                if args.all:
                    statuses.append(outbox.DELIVERED)
                _print_list(outbox.listing(conn, statuses))
                return EXIT_OK
            config = load_config(Path(args.config) if args.config else paths.config_file)
            message = outbox.resend(conn, args.id, config.webhooks.max_age_hours * 3600.0)
            where = config.webhooks.url or "nowhere yet: set [webhooks] url in config.toml"
            print(f"Queued {message.id} ({message.event}) for delivery to {where}; a running server sends it "
                  "within a second.")
            return EXIT_OK
        finally:
            conn.close()
    except (KeyringUnavailable, ConfigError, LookupError, ValueError) as exc:
        return _fail(str(exc))
    except sqlite3.Error as exc:
        return _fail(f"cannot use {paths.state_db}: {exc}")
