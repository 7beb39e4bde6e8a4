"""The tunnel ingress: a loopback listener of its own that only the managed tunnel connects to.

Requests that arrive on it came through the tunnel, so the caller's address is the one the provider
names in its header (Cloudflare: CF-Connecting-IP; ngrok: the last X-Forwarded-For hop, the one ngrok
appends). On every other connection those headers are never believed: anyone can write them. The
listener is on 127.0.0.1 only; a program on this PC could connect to it too, but such a program is
outside the threat model (SECURITY.md): it can read the database file directly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiohttp import web

CF_CONNECTING_IP = "CF-Connecting-IP"
X_FORWARDED_FOR = "X-Forwarded-For"


def client_header(provider: str) -> str:
    """The header in which a provider names the caller."""
    return CF_CONNECTING_IP if provider.startswith("cloudflare") else X_FORWARDED_FOR


@dataclass
class Ingress:
    port: int
    header: str
    public_host: str = ""  # the tunnel's public host name once up (the Host its requests carry)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arrived(self, request: web.Request) -> bool:
        """Whether this request came in on the ingress listener (not on the server's own port)."""
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        return isinstance(sockname, tuple) and len(sockname) >= 2 and sockname[1] == self.port

    def client(self, request: web.Request) -> str | None:
        """The caller's address as the tunnel names it (the last hop of a list), None when it names none."""
        value = request.headers.get(self.header, "")
        candidate = value.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return None

    def answers_to(self, request: web.Request, host: str) -> bool:
        """A tunnelled request for the tunnel's own public name (the Host check's one extra name)."""
        name = host.strip().lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.strip().lower()
        return bool(self.public_host) and name.rstrip(".") == self.public_host and self.arrived(request)
