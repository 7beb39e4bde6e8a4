"""The managed tunnel: how Voka AI reaches this PC without the owner typing a command.

provider.py the interface; ngrok.py (in-process SDK) and cloudflared.py (quick and named tunnels, a child
process) the providers; binary.py finds or downloads cloudflared; supervisor.py keeps one running;
ingress.py the loopback listener that tells tunnelled callers from direct ones; manager.py ties them to a
running server (ServerHost.tunnels); control.py is what the desktop app calls; status.py the status file
that `voka-bridge tunnel status` reads.
"""

from __future__ import annotations

from server.tunnel.cloudflared import CloudflareNamed, CloudflareQuick
from server.tunnel.ngrok import NgrokTunnel
from server.tunnel.provider import TunnelFactory

PROVIDERS: dict[str, TunnelFactory] = {
    "ngrok": NgrokTunnel,
    "cloudflare-quick": CloudflareQuick,
    "cloudflare-named": CloudflareNamed,
}
"""Provider name ([tunnel] provider) → what runs it; tests put stand-ins here."""

LABELS = {
    "ngrok": "ngrok",
    "cloudflare-quick": "Cloudflare quick tunnel",
    "cloudflare-named": "Cloudflare named tunnel",
}
