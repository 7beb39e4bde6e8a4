"""The tunnel tokens: the ngrok authtoken and the Cloudflare tunnel token, in the OS keyring only.

Headless installs without a keyring may pass them in the environment under the names the providers' own
tools use: NGROK_AUTHTOKEN and TUNNEL_TOKEN. The keyring wins when both are set.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re

from server.logs import register_secret
from server.secretstore import SecretStore

ACCOUNTS = {"ngrok": "tunnel:ngrok-authtoken", "cloudflare": "tunnel:cloudflare-token"}
ENV_VARS = {"ngrok": "NGROK_AUTHTOKEN", "cloudflare": "TUNNEL_TOKEN"}
NAMES = {"ngrok": "ngrok authtoken", "cloudflare": "Cloudflare tunnel token"}

_CLOUDFLARE_TOKEN = re.compile(r"eyJ[A-Za-z0-9+/=_-]{20,}")


def secret_kind(provider: str) -> str:
    """Which secret a provider needs: "ngrok" or "cloudflare" (also accepts those two names)."""
    if provider in ("ngrok",):
        return "ngrok"
    if provider in ("cloudflare", "cloudflare-named"):
        return "cloudflare"
    raise ValueError(f"{provider!r} keeps no secret; the tunnels with one are ngrok and cloudflare-named")


def normalize(kind: str, text: str) -> str:
    """The secret as it is stored, from what the owner pasted; ValueError with what is wrong.

    Cloudflare's dashboard shows the token inside a command (`cloudflared service install eyJ…`): the token
    is taken out of it. A tunnel token is base64 JSON naming the account, the tunnel and its secret."""
    value = text.strip()
    if not value:
        raise ValueError(f"the {NAMES[kind]} is empty")
    if kind == "cloudflare":
        found = _CLOUDFLARE_TOKEN.search(value)
        if found is None or not _is_tunnel_token(found.group(0)):
            raise ValueError("this is not a Cloudflare tunnel token: copy it from Cloudflare Zero Trust → "
                             "Networks → Tunnels → your tunnel → Configure (the long text starting with eyJ)")
        return found.group(0)
    words = value.split()
    if len(words) > 1 and "add-authtoken" in words:  # the whole `ngrok config add-authtoken …` line
        value = words[-1]
    if any(c.isspace() for c in value) or len(value) < 20:
        raise ValueError("this is not an ngrok authtoken: copy it from dashboard.ngrok.com → "
                         "Your Authtoken (one long word)")
    return value


def _is_tunnel_token(token: str) -> bool:
    try:
        data = json.loads(base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and {"a", "t", "s"} <= set(data)


def read(kind: str, store: SecretStore | None = None) -> str | None:
    """The stored secret (keyring, else environment), registered for masking; None when there is none."""
    kept = (store or SecretStore()).get(ACCOUNTS[kind])
    secret = kept or os.environ.get(ENV_VARS[kind], "").strip() or None
    register_secret(secret)
    return secret


def store(kind: str, text: str, secrets: SecretStore | None = None) -> None:
    """Check and keep a secret in the keyring (KeyringUnavailable when there is no usable one)."""
    value = normalize(kind, text)
    register_secret(value)
    (secrets or SecretStore()).set(ACCOUNTS[kind], value)


def delete(kind: str, secrets: SecretStore | None = None) -> None:
    (secrets or SecretStore()).delete(ACCOUNTS[kind])


def stored(kind: str, secrets: SecretStore | None = None) -> bool:
    """Whether the keyring (or the environment) holds this secret; never returns it."""
    return read(kind, secrets) is not None
