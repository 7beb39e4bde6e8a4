"""What every managed tunnel is: one run of it, opened until it is up, watched until it ends, closed.

The supervisor (supervisor.py) owns the restarts; a Tunnel only ever runs once. Providers: ngrok.py (the
agent SDK, in this process), cloudflared.py (a `cloudflared` child process, quick or named).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Progress = Callable[[str, float | None], None]
"""Tell the owner what a slow start is doing: (message, fraction done or None)."""

Health = Callable[[bool, str], None]
"""While a tunnel runs: (up, why not) when its connection to the provider drops or comes back."""


class TunnelProblem(Exception):
    """Why a tunnel cannot start or stopped, in words for the owner.

    `permanent`: retrying cannot help until the owner acts (a missing or refused token, a domain the account
    does not own, a download that failed its checksum); otherwise the supervisor tries again with back-off.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class TunnelSpec:
    provider: str  # "ngrok", "cloudflare-quick", "cloudflare-named"
    domain: str  # the fixed public host name, or ""
    target: str  # where the tunnel forwards: the server's tunnel ingress, http://127.0.0.1:PORT
    work_dir: Path  # the data folder's tunnel/ (a downloaded cloudflared, its config file)


class Tunnel(ABC):
    """One run of one tunnel."""

    @abstractmethod
    async def open(self, progress: Progress) -> str:
        """Start and return the public URL (https://…) once the provider says it is up.
        Raises TunnelProblem."""

    @abstractmethod
    async def wait(self, health: Health) -> str:
        """Return, with the reason, when this run has ended (a process that exited, a session the provider
        closed); call `health` as the connection drops and comes back meanwhile. A TunnelProblem raised
        here with `permanent` set stops the supervisor."""

    @abstractmethod
    async def close(self) -> None:
        """Stop it; safe to call more than once, and after a failed open()."""


TunnelFactory = Callable[[TunnelSpec], Tunnel]
