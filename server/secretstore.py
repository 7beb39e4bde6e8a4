"""Secrets in the OS keyring (service `voka-bridge`): API key secrets and the database password.

Never falls back to a plain-text file: when no real keyring is usable the caller gets a message naming
the ways out.

Calls are made one at a time per process, and a failed call is tried again for a short while. Both are
for GNOME Keyring, the usual Secret Service on Linux. `keyring` opens a new D-Bus connection per call,
and with several at once from one process the daemon answered some calls with spurious errors (an item
"does not exist", a prompt "dismissed" that never showed). And the daemon sometimes aborts when clients
come and go quickly ("gkd_secret_service_get_pkcs11_session: assertion 'client' failed"); while the
session restarts it, the service is missing from the bus for a moment. Keyring calls are rare (creating,
showing or revoking a key, reading the database password at start), so neither costs anything that
matters.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import keyring
from keyring.errors import KeyringLocked, PasswordDeleteError

from server import KEYRING_SERVICE

NO_KEYRING_HELP = (
    "No usable OS keyring was found ({backend}), and Voka Bridge never stores secrets in plain text. "
    "Ways out: unlock a Secret Service keyring for this session (GNOME Keyring or KWallet; on a headless "
    "box: `dbus-run-session -- sh -c 'echo -n PASSWORD | gnome-keyring-daemon --unlock; voka-bridge ...'`), "
    "or set MCP_API_KEY (and DATABASE_URL) in the server's environment instead."
)


RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0)
"""Pauses between attempts when the keyring fails: about 1.75 s in all, enough for a restart."""

_ONE_AT_A_TIME = threading.Lock()
_T = TypeVar("_T")


class KeyringUnavailable(Exception):
    """No keyring backend that can keep a secret safely."""


def backend_name() -> str:
    backend = keyring.get_keyring()
    return f"{type(backend).__module__}.{type(backend).__name__}"


def keyring_problem() -> str | None:
    """Why secrets cannot be stored here, or None when the keyring is usable."""
    name = backend_name()
    lowered = name.lower()
    if "fail" in lowered or "null" in lowered or "plaintext" in lowered:
        return NO_KEYRING_HELP.format(backend=name)
    return None


def _call(operation: Callable[[], _T]) -> _T:
    """Run one keyring operation, alone in this process, retrying while the keyring is failing.

    A locked keyring (the owner dismissed the unlock prompt) and a missing entry are answers, not
    failures, so they are not retried. Backends raise their own exception types too (SecretStorage's
    and D-Bus's), not only KeyringError; those are failures of the same kind.
    """
    pauses = iter(RETRY_PAUSES)
    while True:
        try:
            with _ONE_AT_A_TIME:
                return operation()
        except (KeyringLocked, PasswordDeleteError):
            raise
        except Exception:
            pause = next(pauses, None)
            if pause is None:
                raise
        time.sleep(pause)


class SecretStore:
    def __init__(self, service: str = KEYRING_SERVICE) -> None:
        self.service = service

    def _check(self) -> None:
        problem = keyring_problem()
        if problem:
            raise KeyringUnavailable(problem)

    def set(self, account: str, secret: str) -> None:
        self._check()
        try:
            _call(lambda: keyring.set_password(self.service, account, secret))
        except Exception as exc:
            raise KeyringUnavailable(NO_KEYRING_HELP.format(backend=f"{backend_name()}: {exc}")) from None

    def get(self, account: str) -> str | None:
        if keyring_problem():
            return None
        try:
            return _call(lambda: keyring.get_password(self.service, account))
        except Exception:
            return None

    def delete(self, account: str) -> None:
        if keyring_problem():
            return
        with contextlib.suppress(Exception):
            _call(lambda: keyring.delete_password(self.service, account))
