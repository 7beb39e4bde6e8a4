"""Which server processes are alive: each running Bridge holds a lock on a file of its own.

Work a process leaves half done in state.sqlite3 (an idempotency claim, an action between its database
commit and our record of it) names the process as its owner. Another process may settle that work only
once the owner is gone, and must do it at once, not after a timeout: the operating system releases a
file lock when its process ends, however it ends (kill -9 included), so "I can take the owner's lock"
means "the owner is dead", exactly and immediately. With `serve --workers N` the surviving workers
leave each other's work alone; a replacement worker settles what the dead one left.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import IO

FOLDER = "instances"


def try_lock(handle: IO[bytes]) -> bool:
    """Take an exclusive lock without waiting; False when another open file holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:  # flock: per open file, so a second open in the same process does not share the lock
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class ProcessLease:
    """This process's identity for work it leaves in state.sqlite3, held as a locked file until `close`."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self.id = uuid.uuid4().hex
        self._handle: IO[bytes] | None = self._create()

    def _create(self) -> IO[bytes]:
        """The lock file, locked before anyone can see it: made under a temporary name and renamed into
        place (an observer that found it unlocked would take this live process for a dead one). Windows
        cannot rename an open file; there the app's single-instance rule keeps processes from starting
        side by side."""
        final = self._path(self.id)
        staging = final if sys.platform == "win32" else self.folder / f".{self.id}.tmp"
        handle = open(staging, "a+b")  # noqa: SIM115 (held open until close)
        if not try_lock(handle):
            handle.close()
            raise RuntimeError(f"cannot lock {staging}")
        if staging != final:
            os.replace(staging, final)
        return handle

    def _path(self, owner: str) -> Path:
        return self.folder / f"{owner}.lock"

    def alive(self, owner: str | None) -> bool:
        """Whether the process that wrote `owner` still runs (None: a record from before owners were
        kept; the caller decides by age)."""
        if owner is None:
            return True
        if owner == self.id:
            return self._handle is not None
        if not all(c in "0123456789abcdef" for c in owner):
            return False
        try:
            handle = open(self._path(owner), "r+b")  # noqa: SIM115
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: assume it runs (its work waits rather than being taken over)
        with handle:
            return not try_lock(handle)  # closing the handle lets go of the lock we may have taken

    def forget(self, owner: str) -> None:
        """The owner is dead and its work settled: remove its lock file."""
        if owner != self.id and not self.alive(owner):
            with contextlib.suppress(OSError):
                self._path(owner).unlink()

    def dead_owners(self) -> list[str]:
        """Lock files whose process has ended (to tidy up after settling their work)."""
        owners = [path.stem for path in self.folder.glob("*.lock")]
        return [owner for owner in owners if owner != self.id and not self.alive(owner)]

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(self._path(self.id))
