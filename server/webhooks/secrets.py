"""The two webhook secrets, in the OS keyring only (service `voka-bridge`):

- the signing secret (`whsec_…`) that Voka uses to verify our signatures: created by
  `voka-bridge webhooks secret` (or by the server the first time it has an event to send);
- Voka's API key, sent as `x-api-key` with every event: set with `voka-bridge webhooks set-key`.

Headless installs without a keyring may pass them in the environment instead: VOKA_WEBHOOK_SECRET and
VOKA_WEBHOOK_API_KEY. The keyring wins when both are set. Neither is ever written to a file or a log.
"""

from __future__ import annotations

import os

from server.logs import register_secret
from server.secretstore import SecretStore
from server.webhooks import signing

SIGNING_ACCOUNT = "webhooks:signing-secret"
API_KEY_ACCOUNT = "webhooks:voka-api-key"
SIGNING_ENV = "VOKA_WEBHOOK_SECRET"
API_KEY_ENV = "VOKA_WEBHOOK_API_KEY"


def _read(account: str, env: str, store: SecretStore | None) -> str | None:
    value = (store or SecretStore()).get(account) or os.environ.get(env, "").strip() or None
    register_secret(value)
    return value


def signing_secret(store: SecretStore | None = None, *, create: bool = False) -> str | None:
    """The signing secret; with `create`, a new one is made and kept in the keyring when there is none
    (KeyringUnavailable when there is no usable keyring)."""
    store = store or SecretStore()
    secret = _read(SIGNING_ACCOUNT, SIGNING_ENV, store)
    if secret is not None:
        signing.secret_key(secret)  # a mangled secret is reported, not used
        return secret
    if not create:
        return None
    secret = signing.new_secret()
    register_secret(secret)
    store.set(SIGNING_ACCOUNT, secret)
    return secret


def voka_api_key(store: SecretStore | None = None) -> str | None:
    return _read(API_KEY_ACCOUNT, API_KEY_ENV, store)


def set_voka_api_key(value: str, store: SecretStore | None = None) -> None:
    value = value.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("Voka's API key is one word without spaces")
    register_secret(value)
    (store or SecretStore()).set(API_KEY_ACCOUNT, value)


def delete_voka_api_key(store: SecretStore | None = None) -> None:
    (store or SecretStore()).delete(API_KEY_ACCOUNT)
