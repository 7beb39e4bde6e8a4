"""Secrets in the OS keyring (service `voka-bridge`): API key secrets and the database password.

Never falls back to a plain-text file: when no real keyring is usable the caller gets a message naming
the ways out.
"""

from __future__ import annotations

import contextlib

import keyring
from keyring.errors import KeyringError

from server import KEYRING_SERVICE

NO_KEYRING_HELP = (
    "No usable OS keyring was found ({backend}), and Voka Bridge never stores secrets in plain text. "
    "Ways out: unlock a Secret Service keyring for this session (GNOME Keyring or KWallet; on a headless "
    "box: `dbus-run-session -- sh -c 'echo -n PASSWORD | gnome-keyring-daemon --unlock; voka-bridge ...'`), "
    "or set MCP_API_KEY (and DATABASE_URL) in the server's environment instead."
)


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
            keyring.set_password(self.service, account, secret)
        except KeyringError as exc:
            raise KeyringUnavailable(NO_KEYRING_HELP.format(backend=f"{backend_name()}: {exc}")) from None

    def get(self, account: str) -> str | None:
        if keyring_problem():
            return None
        try:
            return keyring.get_password(self.service, account)
        except KeyringError:
            return None

    def delete(self, account: str) -> None:
        if keyring_problem():
            return
        with contextlib.suppress(KeyringError):
            keyring.delete_password(self.service, account)
