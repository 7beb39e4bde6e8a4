"""One app per user and home folder: a second launch asks the first to show its window, then exits.

The claim is an exclusive lock on a file (the OS drops it when the process ends, however it ends, so a
crashed instance never blocks the next start); the "show yourself" message goes over a local socket or
named pipe with the standard library's `multiprocessing.connection`, in the user's runtime folder, with a
key derived from the instance name that keeps stray connections out. Plain Python rather than
QLocalServer: QtNetwork was 3.4 MB of the installer for this one job.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import sys
import tempfile
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import IO

import platformdirs
from PySide6.QtCore import QObject, Signal

from server.liveness import try_lock
from server.paths import Paths

CONNECT_TIMEOUT_S = 2.0
SHOW, STOP = b"show", b"stop"


def _runtime_folder() -> Path:
    """The user's own runtime folder (/run/user/UID, ...), else the temp folder."""
    with contextlib.suppress(OSError):
        folder = Path(platformdirs.user_runtime_dir("VokaBridge", appauthor=False))
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder
    return Path(tempfile.gettempdir())


def instance_name(paths: Paths) -> str:
    digest = hashlib.sha256(f"{getpass.getuser()}|{paths.config_dir}".encode()).hexdigest()[:16]
    return f"voka-bridge-{digest}"


class SingleInstance(QObject):
    activated = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        folder = _runtime_folder()
        self._lock_path = folder / f"{name}.lock"
        self._address = rf"\\.\pipe\{name}" if sys.platform == "win32" else str(folder / f"{name}.sock")
        self._authkey = hashlib.sha256(f"{getpass.getuser()}|{name}|voka-bridge".encode()).digest()
        self._lock: IO[bytes] | None = None
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None

    def claim(self) -> bool:
        """True when this is the first instance; else the first one is told to show itself."""
        handle = open(self._lock_path, "a+b")  # noqa: SIM115 (held while this instance runs)
        if not try_lock(handle):
            handle.close()
            self._tell_first()
            return False
        self._lock = handle
        if sys.platform != "win32":
            Path(self._address).unlink(missing_ok=True)  # a crashed instance's socket; we hold the lock
        self._listener = Listener(self._address, authkey=self._authkey)
        self._thread = threading.Thread(target=self._serve, name="single-instance", daemon=True)
        self._thread.start()
        return True

    def _tell_first(self) -> None:
        """The first instance may still be starting (lock taken, listener not yet up): retry briefly."""
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                with Client(self._address, authkey=self._authkey) as connection:
                    connection.send_bytes(SHOW)
                return
            except (OSError, EOFError):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)

    def _serve(self) -> None:
        assert self._listener is not None
        while True:
            try:
                with self._listener.accept() as connection:
                    message = connection.recv_bytes(16)
            except (OSError, EOFError, AuthenticationError):
                if self._listener is None:
                    return
                continue  # a caller without the key, or one that went away: ignore it
            if message == STOP:
                return
            if message == SHOW:
                self.activated.emit()  # queued to the GUI thread (this object lives there)

    def release(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError, EOFError), Client(self._address, authkey=self._authkey) as c:
                c.send_bytes(STOP)  # wakes the accepting thread so it ends
            if self._thread is not None:
                self._thread.join(timeout=5)
            listener.close()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None
