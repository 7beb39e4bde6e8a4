"""The PyInstaller bundle, built from installer/voka-bridge.spec and run as a shop owner would run it.

The desktop app starts under a real X server (Xvfb) with a fresh home, shows its window, serves /health,
shows every page, and quits cleanly on SIGTERM; the frozen `serve --demo` answers a query; the frozen
`keys create` stores its key through the real Secret Service (the suite's private GNOME Keyring).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.keys import keyring_account
from server.secretstore import SecretStore
from tests.conftest import free_port
from tests.unavailable import unavailable

ROOT = Path(__file__).resolve().parents[2]
SIZE_BUDGET_MB = 150
PAGES = 8  # Ctrl+1 ... Ctrl+8 in the main window
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|Error in sys.excepthook|Fatal Python error")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/VokaBridge built once per run from the spec, as the installer workflows build it: in a venv
    of its own holding only the pinned `.[installer]` install, so whatever else the test environment
    has (numpy, jedi, ...) cannot slip into the bundle through some library's optional import."""
    work = tmp_path_factory.mktemp("pyinstaller")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), f"{ROOT}[installer]"],
        cwd=work, capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        unavailable(f"cannot install the build environment: {installed.stderr[-2000:]}")
    result = subprocess.run(
        [str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath",
         str(work / "dist"), "--workpath", str(work / "build"), str(ROOT / "installer" / "voka-bridge.spec")],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work / "dist" / "VokaBridge"


def _size_mb(folder: Path) -> float:
    return sum(p.lstat().st_size for p in folder.rglob("*")) / 1e6


def _frozen_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "PYTHONPATH")}
    env.update(extra)
    return env


def _get(url: str, timeout: float = 2) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _post(url: str, body: dict, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "x-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait(condition, seconds: float, what: str, proc: subprocess.Popen | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the frozen program exited ({proc.returncode}) while waiting for {what}")
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}")


def _output(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    return proc.stdout.read() if proc.poll() is not None else ""


def test_the_bundle_fits_its_budget_and_carries_what_the_app_reads(bundle: Path) -> None:
    assert _size_mb(bundle) <= SIZE_BUDGET_MB, f"{_size_mb(bundle):.0f} MB"
    internal = bundle / "_internal"
    for name in ("tools.toml", "demo/schema.sqlite.sql", "demo/data.sql", "templates/create_order.toml",
                 "icons/voka-bridge.svg", "icons/page-keys.svg"):
        assert (internal / "resources" / name).is_file(), name
    assert list(internal.glob("keyring-*.dist-info")), "keyring finds its backends through its metadata"
    assert not list(internal.rglob("QtQml*")) and not list(internal.rglob("translations"))
    assert (bundle / "voka-bridge-cli").exists()


# ---- the desktop app under a real X server ---------------------------------------------------------
@pytest.fixture
def display(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A private Xvfb; its screen is a file (-fbdir) so the test can tell whether pages really change."""
    for tool in ("Xvfb", "xdotool"):
        if not shutil.which(tool):
            unavailable(f"{tool} is not installed (Debian packages xvfb and xdotool)")
    fb = tmp_path / "fb"
    fb.mkdir()
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp",
                             "-fbdir", str(fb)], pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    try:
        yield f":{number}", fb / "Xvfb_screen0"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def _xdotool(display: str, *args: str) -> list[str]:
    result = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True,
                            text=True, timeout=10)
    return result.stdout.split()


def test_the_frozen_desktop_app_opens_serves_shows_every_page_and_quits(
        bundle: Path, display: tuple[str, Path], tmp_path: Path) -> None:
    screen_name, screen = display
    home, port = tmp_path / "home", free_port()
    log = (tmp_path / "gui.log").open("w+")
    app = subprocess.Popen([str(bundle / "VokaBridge"), "gui", "--home", str(home), "--port", str(port)],
                           env=_frozen_env(home, DISPLAY=screen_name), stdout=log, stderr=subprocess.STDOUT)
    try:
        main = _wait(lambda: _xdotool(screen_name, "search", "--onlyvisible", "--name", "^Voka Bridge$"), 60,
                     'the "Voka Bridge" window', app)[0]
        status, health = _wait(lambda: _get(f"http://127.0.0.1:{port}/health"), 60, "the embedded /health", app)
        assert status == 200 and health["status"] == "healthy"
        # A fresh home opens the connection wizard over the window first; Escape closes it.
        wizard = _wait(lambda: _xdotool(screen_name, "search", "--onlyvisible", "--name", "Connect to Voka"),
                       20, "the first-run wizard", app)[0]
        _xdotool(screen_name, "windowfocus", "--sync", wizard)
        _xdotool(screen_name, "key", "Escape")
        _wait(lambda: not _xdotool(screen_name, "search", "--onlyvisible", "--name", "Connect to Voka"), 20,
              "the wizard to close", app)
        _xdotool(screen_name, "windowfocus", "--sync", main)
        shown = []
        for page in range(1, PAGES + 1):
            before = hashlib.sha256(screen.read_bytes()).hexdigest()
            _xdotool(screen_name, "key", f"ctrl+{page}")
            if page > 1:  # page 1 is already showing
                _wait(lambda before=before: hashlib.sha256(screen.read_bytes()).hexdigest() != before, 10,
                      f"page {page} to show", app)
            time.sleep(0.3)  # let the page finish painting
            shown.append(hashlib.sha256(screen.read_bytes()).hexdigest())
        assert len(set(shown)) == PAGES, "every page looks different"
        assert app.poll() is None
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
        code = app.wait(timeout=60)
    log.seek(0)
    output = log.read()
    assert code == 0, output[-3000:]
    assert not TRACEBACK.search(output), output[-3000:]
    assert (home / "state.sqlite3").exists() and (home / "demo.sqlite3").exists()  # the fresh home was set up


# ---- the console companion: serve, keys -----------------------------------------------------------
def test_frozen_serve_demo_answers_a_query(bundle: Path, tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    created = subprocess.run([str(bundle / "voka-bridge-cli"), "keys", "create", "--name", "voka", "--home",
                              str(home)], env=_frozen_env(home), capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    server = subprocess.Popen([str(bundle / "voka-bridge-cli"), "serve", "--demo", "--home", str(home),
                               "--port", str(port)], env=_frozen_env(home), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.strip() == f"listening on http://127.0.0.1:{port}", line
        status, body = _post(f"http://127.0.0.1:{port}/query",
                             {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}, key)
        assert status == 200 and body["success"] is True, body
        assert body["data"][0]["product_id"] == "JKT-BLU-M" and body["data"][0]["quantity"] >= 0
        assert _get(f"http://127.0.0.1:{port}/health")[0] == 200
    finally:
        server.send_signal(signal.SIGTERM)
        rest = server.communicate(timeout=60)[0]
    assert server.returncode == 0, rest
    assert not TRACEBACK.search(rest), rest


def test_frozen_keys_create_stores_the_key_in_the_secret_service(bundle: Path, tmp_path: Path,
                                                                 real_keyring: object) -> None:
    if real_keyring is None:
        unavailable("no private GNOME Keyring (Debian packages gnome-keyring and dbus)")
    home = tmp_path / "home"
    created = subprocess.run([str(bundle / "voka-bridge-cli"), "keys", "create", "--name", "till", "--home",
                              str(home)], env=_frozen_env(home), capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = re.fullmatch(r"vbk_([0-9a-f]+)_[\w-]+", key)
    assert key_id, key
    assert SecretStore().get(keyring_account(key_id[1])) == key
