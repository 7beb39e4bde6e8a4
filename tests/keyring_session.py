"""A private, unlocked GNOME Keyring (the Secret Service) on a private D-Bus, for the test run.

Where gnome-keyring-daemon exists (Linux, CI) the suite gets a real Secret Service whose files live in a
temp folder, so no developer's own keyring is touched. Elsewhere the platform's own backend is used.

The private bus has no service activation. With the system's activation files, the first keyring call
made before our unlocked daemon had claimed its bus name made D-Bus start a second, locked daemon, and
every secret after that failed with "Failed to unlock the collection" (seen on a loaded CI machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
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


class KeyringSession:
    def __init__(self) -> None:
        self.root: Path | None = None
        self.dbus: subprocess.Popen[bytes] | None = None
        self.saved: dict[str, str | None] = {}

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
        subprocess.run(["gnome-keyring-daemon", "--unlock", "--components=secrets"],
                       input=b"voka-test", check=True, capture_output=True, timeout=30)
        self._wait_for_secret_service()

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

    def _daemon_pids(self) -> list[int]:
        """gnome-keyring-daemon forks away; find ours by the runtime dir in its environment."""
        marker = f"XDG_RUNTIME_DIR={self.root}/run".encode()
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if (proc.joinpath("comm").read_text().strip().startswith("gnome-keyring")
                        and marker in proc.joinpath("environ").read_bytes().split(b"\0")):
                    pids.append(int(proc.name))
            except OSError:
                continue
        return pids

    def stop(self) -> None:
        for pid in self._daemon_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
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
