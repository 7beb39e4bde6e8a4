"""A private, unlocked GNOME Keyring (the Secret Service) on a private D-Bus, for the test run.

Where gnome-keyring-daemon exists (Linux, CI) the suite gets a real Secret Service whose files live in a
temp folder, so no developer's own keyring is touched. Elsewhere the platform's own backend is used.

The private bus has no service activation. With the system's activation files, the first keyring call
made before our unlocked daemon had claimed its bus name made D-Bus start a second, locked daemon, and
every secret after that failed with "Failed to unlock the collection" (seen on a loaded CI machine).

The daemon is supervised the way a desktop session does it (systemd's Restart=on-failure): gnome-keyring
42 aborts now and then when clients come and go quickly ("gkd_secret_service_get_pkcs11_session:
assertion 'client' failed", then a GLib assertion in invoke_get_property_in_idle_cb). Unsupervised, one
such crash took every later test down with it. The daemon runs in the foreground as our child, its
keyring files stay on disk, and a crashed daemon is restarted unlocked at once; every crash is counted
and its last log lines are kept for the end-of-run summary (crashes a test causes on purpose are not).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

_PASSWORD = b"voka-test"


class KeyringSession:
    def __init__(self) -> None:
        self.root: Path | None = None
        self.dbus: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.crashes: list[str] = []
        self._induced: set[int] = set()
        self.saved: dict[str, str | None] = {}
        self._stopping = threading.Event()
        self._restart = threading.Lock()
        self._supervisor: threading.Thread | None = None

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("gnome-keyring-daemon") and shutil.which("dbus-daemon"))

    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="voka-keyring-"))
        runtime = self.root / "run"
        runtime.mkdir(mode=0o700)
        env_updates = {"XDG_DATA_HOME": str(self.root / "data"), "XDG_RUNTIME_DIR": str(runtime)}
        config = self.root / "bus.conf"
        config.write_text(_BUS_CONFIG.format(bus=runtime / "bus"))
        proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, env={**os.environ, **env_updates})
        assert proc.stdout is not None
        address = proc.stdout.readline().decode().strip()
        self.dbus = proc
        if not address:
            raise RuntimeError("the private D-Bus session bus did not start")
        env_updates["DBUS_SESSION_BUS_ADDRESS"] = address
        for name, value in env_updates.items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = value
        self.daemon = self._start_daemon()
        self._wait_for_secret_service()
        self._supervisor = threading.Thread(target=self._supervise, name="keyring-supervisor", daemon=True)
        self._supervisor.start()

    @property
    def log(self) -> Path:
        assert self.root is not None
        return self.root / "daemon.log"

    def _start_daemon(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            daemon = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        assert daemon.stdin is not None
        daemon.stdin.write(_PASSWORD)
        daemon.stdin.close()
        return daemon

    def _supervise(self) -> None:
        assert self.daemon is not None
        while True:
            code = self.daemon.wait()
            with self._restart:
                if self._stopping.is_set():
                    return
                if self.daemon.pid not in self._induced:
                    tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                    self.crashes.append(f"exit status {code}: " + " | ".join(tail))
                self.daemon = self._start_daemon()

    def crash_daemon(self) -> int:
        """Abort the daemon as its own assertion failures do; returns the pid that was killed."""
        assert self.daemon is not None
        pid = self.daemon.pid
        self._induced.add(pid)
        os.kill(pid, signal.SIGABRT)
        return pid

    @staticmethod
    def _wait_for_secret_service(timeout: float = 20.0) -> None:
        """The daemon registers on the bus asynchronously; under load that can take a moment. Ready
        means a secret can be stored, read back and deleted, not only that a backend was chosen."""
        import keyring
        import keyring.core
        import keyring.errors

        from server.secretstore import keyring_problem

        deadline = time.monotonic() + timeout
        while True:
            keyring.core.init_backend()
            problem = keyring_problem()
            if problem is None:
                try:
                    keyring.set_password("voka-test-probe", "probe", "ready")
                    if keyring.get_password("voka-test-probe", "probe") == "ready":
                        keyring.delete_password("voka-test-probe", "probe")
                        return
                    problem = "a stored probe secret did not read back"
                except keyring.errors.KeyringError as exc:
                    problem = str(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private GNOME Keyring did not come up: {problem}")
            time.sleep(0.2)

    def stop(self) -> None:
        with self._restart:
            self._stopping.set()
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
        if self.dbus is not None:
            self.dbus.terminate()
            self.dbus.wait(timeout=10)
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
