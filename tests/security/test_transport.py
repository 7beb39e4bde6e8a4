"""Transport security on real sockets: HTTPS with a generated or owned certificate, HSTS, the plain-HTTP
refusal off loopback (and its loud override), the Host check against DNS rebinding, response headers."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from server import tls
from server.bridge import Bridge
from server.config import Config, ConfigError
from server.host import ServerHost
from server.paths import Paths
from tests.conftest import RunningServer, ServerFactory, free_port
from tests.security.conftest import (
    audit_rows,
    body_of,
    captured_logs,
    host_of,
    raw_exchange,
    request_bytes,
    run_cli,
    status_of,
)

INVENTORY = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}


def trusting(cert: Path) -> ssl.SSLContext:
    """A client that trusts exactly this certificate (what pinning the shown fingerprint amounts to)."""
    return ssl.create_default_context(cafile=str(cert))


async def https_post(url: str, cert: Path, key: str) -> tuple[int, dict, aiohttp.ClientResponse]:
    connector = aiohttp.TCPConnector(ssl=trusting(cert))
    async with aiohttp.ClientSession(connector=connector) as session, session.post(
            url + "/query", json=INVENTORY, headers={"x-api-key": key}) as response:
        return response.status, await response.json(), response


async def test_self_signed_tls_serves_https_with_hsts(make_server: ServerFactory, home: Paths) -> None:
    running = await make_server({"server": {"tls_self_signed": True}})
    assert running.url.startswith("https://127.0.0.1:")
    certificate = running.host.certificate
    assert certificate is not None and certificate.cert_path.parent == home.data_dir / "tls"
    key = await running.create_key("k", ("query",))
    status, body, response = await https_post(running.url, certificate.cert_path, key)
    assert status == 200 and body["success"] is True
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    # The fingerprint shown to the owner is that of the certificate actually served.
    served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", running.host.port))
    pem = x509.load_pem_x509_certificate(served.encode())
    assert pem.fingerprint(hashes.SHA256()).hex(":").upper() == certificate.fingerprint
    assert stat.S_IMODE(os.stat(certificate.key_path).st_mode) == 0o600
    assert {"localhost", "127.0.0.1"} <= set(certificate.names)


async def test_plain_http_to_the_tls_port_gets_nothing(make_server: ServerFactory) -> None:
    running = await make_server({"server": {"tls_self_signed": True}})
    plain = running.url.replace("https://", "http://")
    raw = await raw_exchange(plain, request_bytes("GET", "/health", host=host_of(plain)))
    assert status_of(raw) == 0  # a TLS alert or a closed socket, never an HTTP answer


async def test_the_generated_certificate_is_reused_across_restarts(make_server: ServerFactory) -> None:
    first = await make_server({"server": {"tls_self_signed": True}})
    fingerprint = first.host.certificate.fingerprint  # type: ignore[union-attr]
    await first.host.stop()
    second = await make_server({"server": {"tls_self_signed": True}})
    assert second.host.certificate.fingerprint == fingerprint  # type: ignore[union-attr]


async def test_owner_certificate_is_served(make_server: ServerFactory, tmp_path: Path) -> None:
    owned = tls.generate(tmp_path / "mine", ["localhost", "127.0.0.1"])
    running = await make_server({"server": {"tls_cert": str(owned.cert_path), "tls_key": str(owned.key_path)}})
    assert running.host.certificate.fingerprint == owned.fingerprint  # type: ignore[union-attr]
    key = await running.create_key("k", ("query",))
    status, _, response = await https_post(running.url, owned.cert_path, key)
    assert status == 200 and "Strict-Transport-Security" in response.headers


@pytest.mark.parametrize("server_settings, complaint", [
    ({"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}, "cannot read"),
    ({"tls_cert": "/nonexistent/cert.pem"}, "must be set together"),
])
async def test_unusable_tls_settings_stop_the_start_with_a_message(home: Paths, server_settings: dict,
                                                                   complaint: str) -> None:
    config = Config.model_validate({"server": {"port": 0, **server_settings}})
    host = ServerHost(Bridge(home, config, database_url="sqlite:///" + home.demo_db.as_posix().lstrip("/")))
    with pytest.raises(ConfigError, match=complaint):
        await host.start()


async def test_plain_http_off_loopback_is_refused_with_both_fixes(home: Paths) -> None:
    config = Config.model_validate({"server": {"host": "0.0.0.0", "port": 0}})
    host = ServerHost(Bridge(home, config, database_url="sqlite:///" + home.demo_db.as_posix().lstrip("/")))
    with pytest.raises(ConfigError) as refused:
        await host.start()
    message = str(refused.value)
    assert "0.0.0.0" in message
    assert "tls_cert" in message and "tls_self_signed" in message  # fix 1: HTTPS
    assert "127.0.0.1" in message and "tunnel" in message  # fix 2: loopback behind a tunnel
    assert "allow_insecure_http" in message
    assert host.runner is None  # nothing was bound


def test_serve_refuses_a_network_address_without_tls(tmp_path: Path) -> None:
    done = run_cli("serve", "--demo", "--home", str(tmp_path / "home"), "--host", "0.0.0.0",
                   "--port", str(free_port()))
    assert done.returncode != 0
    assert "Refusing to serve plain HTTP on 0.0.0.0" in done.stderr and "tls_self_signed" in done.stderr
    assert "listening on" not in done.stdout


async def test_insecure_override_is_loudly_logged(make_server: ServerFactory) -> None:
    with captured_logs("server.host") as logs:
        running = await make_server({"server": {"host": "0.0.0.0", "allow_insecure_http": True}})
    warnings = [r for r in logs.records if r.levelname == "WARNING" and "SECURITY" in r.getMessage()]
    assert len(warnings) == 1 and "unencrypted" in warnings[0].getMessage()
    assert running.url.startswith("http://0.0.0.0:")


def test_tls_commands_generate_and_show_the_fingerprint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = run_cli("tls", "generate", "--name", "shop.example", "--home", str(home))
    assert made.returncode == 0, made.stderr
    fingerprint = made.stdout.strip().splitlines()[-1].removeprefix("SHA-256 fingerprint ")
    cert = x509.load_pem_x509_certificate((home / "tls" / "cert.pem").read_bytes())
    assert fingerprint == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert "shop.example" in made.stdout
    shown = run_cli("tls", "fingerprint", "--home", str(home))
    assert shown.returncode == 0 and shown.stdout.strip().endswith(fingerprint)
    missing = run_cli("tls", "fingerprint", "--home", str(tmp_path / "other"))
    assert missing.returncode != 0 and "tls generate" in missing.stderr


async def test_serve_prints_the_fingerprint_of_its_self_signed_certificate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[server]\ntls_self_signed = true\n")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "serve", "--demo", "--home", str(home), "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("listening on"):
            line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
            assert line, lines
            lines.append(line.decode().rstrip())
        assert lines[-1] == f"listening on https://127.0.0.1:{port}"
        shown = next(line for line in lines if "SHA-256 fingerprint" in line).split()[-1]
        cert = x509.load_pem_x509_certificate((home / "tls" / "cert.pem").read_bytes())
        assert shown == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


# ---- Host check (DNS rebinding) and response headers ---------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:3000", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "[2001:db8::1]:80"])
async def test_foreign_host_names_are_refused_on_loopback(server: RunningServer, host: str) -> None:
    with captured_logs("server.security") as logs:
        for _ in range(3):
            raw = await raw_exchange(server.url, request_bytes(
                "POST", "/query", host=host, body=json.dumps(INVENTORY).encode(),
                headers={"Content-Type": "application/json", "x-api-key": server.keys["reader"]}))
            assert status_of(raw) == 403
            assert json.loads(body_of(raw))["code"] == "host_not_allowed"
    assert len([m for m in logs.messages() if "host name" in m]) == 1  # warned once, not per request
    rows = [r for r in await audit_rows(server.bridge) if r["error_code"] == "host_not_allowed"]
    assert len(rows) == 3 and rows[0]["detail"] == "host not allowed"
    assert rows[0]["key_id"] is None  # refused before the key was even looked at


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:3000", "127.0.0.1", "127.0.0.2:9", "[::1]:3000",
                                  "app.localhost"])
async def test_loopback_host_names_are_served(server: RunningServer, host: str) -> None:
    raw = await raw_exchange(server.url, request_bytes(
        "POST", "/query", host=host, body=json.dumps(INVENTORY).encode(),
        headers={"Content-Type": "application/json", "x-api-key": server.keys["reader"]}))
    assert status_of(raw) == 200


async def test_the_public_url_host_is_served_behind_a_tunnel(make_server: ServerFactory) -> None:
    running = await make_server({"server": {"public_url": "https://shop-tunnel.trycloudflare.com",
                                            "check_public_url": False}})  # never probe an outside name
    assert running.bridge.reachability is None
    key = await running.create_key("k", ("query",))
    status, _, _ = await running.post("/query", INVENTORY, key=key,
                                      headers={"Host": "shop-tunnel.trycloudflare.com"})
    assert status == 200
    status, body, _ = await running.post("/query", INVENTORY, key=key,
                                         headers={"Host": "other.trycloudflare.com"})
    assert (status, body["code"]) == (403, "host_not_allowed")


async def test_network_binds_with_tls_do_not_check_host(make_server: ServerFactory) -> None:
    running = await make_server({"server": {"host": "0.0.0.0", "tls_self_signed": True}})
    cert = running.host.certificate.cert_path  # type: ignore[union-attr]
    connector = aiohttp.TCPConnector(ssl=trusting(cert))
    url = f"https://127.0.0.1:{running.host.port}/health"
    async with aiohttp.ClientSession(connector=connector) as session, session.get(
            url, headers={"Host": "shop.example"}) as response:
        assert response.status == 200


@pytest.mark.parametrize("method, path, key_name", [
    ("GET", "/health", None), ("POST", "/query", "reader"), ("POST", "/query", None),
    ("GET", "/nowhere", None), ("PUT", "/query", "reader"),
])
async def test_every_answer_carries_the_security_headers(server: RunningServer, method: str, path: str,
                                                         key_name: str | None) -> None:
    headers = {"x-api-key": server.keys[key_name]} if key_name else {}
    async with server.session.request(method, server.url + path, json=INVENTORY, headers=headers) as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Server"] == "voka-bridge"  # no framework or Python version
        assert "Strict-Transport-Security" not in response.headers  # plain HTTP: HSTS would be ignored
