"""Pictures of every page with realistic data, for the README: `python -m app.screenshots [--out DIR]`.

Runs the real app (embedded server on a free port, demo database, a temporary home), sends it real
traffic, opens each page and saves PNGs. Needs a display: under a headless box it re-runs itself in
Xvfb (`xvfb-run`). The first-run key "Voka AI" and a second key are made as an owner would (in the
keyring when there is one, revoked again at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

PAGES = [("Overview", "overview"), ("Requests", "requests"), ("Test console", "console"), ("Tools", "tools"),
         ("Keys", "keys"), ("Database", "database"), ("Settings", "settings"), ("Connect to Voka", "connect")]
PHONES = ["+15558594448", "+15551234567", "+15550000000"]
PRODUCTS = ["JKT-BLU-M", "JKT-RED-L", "TSH-WHT-S", "NOPE-000"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _traffic(url: str, keys: list[str], seconds: float, stop: threading.Event) -> None:
    """Voka-like calls for a while: lookups, stock checks, some orders, a few wrong keys."""
    import aiohttp

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not stop.is_set():
                roll = random.random()
                key = random.choice(keys)
                if roll < 0.45:
                    body = {"name": "find_customer_by_phone", "params": {"phone": random.choice(PHONES)}}
                elif roll < 0.85:
                    body = {"name": "check_inventory", "params": {"product_id": random.choice(PRODUCTS)}}
                elif roll < 0.95:
                    body = {"name": "get_order_status", "params": {"order_id": random.randint(1, 40)}}
                else:
                    key = "vbk_wrong_key"
                    body = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}
                async with session.post(url + "/query", json=body, headers={"x-api-key": key}) as response:
                    await response.read()
                await asyncio.sleep(random.uniform(0.01, 0.12))

    asyncio.run(run())


def _wait(app: object, condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        app.processEvents()  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        time.sleep(0.02)


def _settle(app: object, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def take(out: Path, traffic_seconds: float, pause: float = 0.6) -> list[Path]:
    from PySide6.QtWidgets import QApplication

    from app.desktop import DesktopApp
    from server import keyadmin
    from server.autostart import XdgAutostart

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Voka Bridge")
    home = Path(tempfile.mkdtemp(prefix="voka-shots-"))
    desktop = DesktopApp(str(home), _free_port(), autostart=XdgAutostart(home / "xdg"), tray=True)
    saved: list[Path] = []
    stop = threading.Event()
    try:
        desktop.window.resize(1180, 760)
        desktop.window.show()
        desktop.start()
        _wait(app, lambda: desktop.server.state == "serving")
        keys = [desktop.server.first_key or "", keyadmin.create_key(desktop.server.paths, "Front desk tablet",
                                                                   ("query",))[1]]
        desktop.controller.keys_changed()
        url = desktop.controller.local_url
        worker = threading.Thread(target=_traffic, args=(url, keys, traffic_seconds, stop), daemon=True)
        worker.start()
        while worker.is_alive():
            _settle(app, 0.2)
        out.mkdir(parents=True, exist_ok=True)
        for title, slug in PAGES:
            page = desktop.window.show_page(title)
            _settle(app, pause)
            if slug == "requests":
                page.table.selectRow(2)  # type: ignore[attr-defined]
            elif slug == "console":
                page.select_tool("check_inventory")  # type: ignore[attr-defined]
                page.form.set_value("product_id", "JKT-BLU-M")  # type: ignore[attr-defined]
                page.send()  # type: ignore[attr-defined]
                _wait(app, lambda p=page: p.status_label.text().startswith(  # type: ignore[attr-defined]
                    ("HTTP", "Not sent")))
            elif slug == "tools":
                page.select_tool("find_customer_by_phone")  # type: ignore[attr-defined]
            elif slug == "database":
                page.refresh_schema()  # type: ignore[attr-defined]
                page.test()  # type: ignore[attr-defined]
                _wait(app, lambda p=page: p.result.text().startswith(("✔", "✘")))  # type: ignore[attr-defined]
            _settle(app, pause)
            path = out / f"{slug}.png"
            desktop.window.grab().save(str(path))
            saved.append(path)
        wizard = desktop.open_wizard()
        wizard.resize(720, 560)
        _settle(app, pause)
        path = out / "wizard-database.png"
        wizard.grab().save(str(path))
        saved.append(path)
        wizard.setStartId(wizard.pageIds()[2])  # "How Voka reaches this PC": the tunnel choices
        wizard.restart()
        _settle(app, pause)
        path = out / "wizard-reach.png"
        wizard.grab().save(str(path))
        saved.append(path)
        wizard.reject()
        for key in keyadmin.list_keys(desktop.server.paths):
            keyadmin.revoke_key(desktop.server.paths, key.id)  # leave nothing behind in the keyring
    finally:
        stop.set()
        desktop.shutdown()
        shutil.rmtree(home, ignore_errors=True)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.screenshots", description=__doc__)
    parser.add_argument("--out", default="docs/screenshots", help="folder for the PNGs")
    parser.add_argument("--traffic-seconds", type=float, default=25.0, help="how long to send requests first")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            print("No display: install Xvfb (xvfb-run) or run on a desktop.", file=sys.stderr)
            return 1
        os.execv(xvfb, [xvfb, "-a", "-s", "-screen 0 1400x900x24", sys.executable, "-m", "app.screenshots",
                        *(argv if argv is not None else sys.argv[1:])])
    for path in take(Path(args.out), args.traffic_seconds):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
