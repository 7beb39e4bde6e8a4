"""Cloudflare tunnels against a fake `cloudflared` at the process boundary: the real server on a real port,
the real supervisor and provider code, a child process that behaves like cloudflared on the wire."""

from __future__ import annotations

import os
import sys

import pytest

from server.secretstore import SecretStore
from server.tunnel import secrets
from server.tunnel.cloudflared import MISSING_TOKEN
from tests.conftest import free_port
from tests.server.tunnel.conftest import audit_rows, until
from tests.server.tunnel.fake_cloudflared import DEFAULT_CLIENT, LOG_DECOY

# base64 of {"a":"account","t":"tunnel-id","s":"tunnel-secret"}, the shape of a Cloudflare tunnel token
TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwtaWQiLCJzIjoidHVubmVsLXNlY3JldCJ9"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still has a pid; it is dead all the same
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


async def test_quick_tunnel_comes_up_with_the_address_from_the_metrics_endpoint(make_tunnelled, fake_cloudflared):
    server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    up = await events.wait_for(lambda e: e.state == "up")
    run = fake_cloudflared.runs()[0]
    assert up.public_url == f"https://{run['hostname']}" and up.public_url.endswith(".trycloudflare.com")
    assert up.public_url != LOG_DECOY  # never read from the log
    assert up.provider == "cloudflare-quick" and up.url_changed is False
    assert events.states()[0] == "starting"
    ingress = server.bridge.tunnel_ingress
    assert ingress is not None and ingress.port != server.host.port
    assert up.ingress == f"http://127.0.0.1:{ingress.port}"
    argv = run["argv"]
    assert argv[:2] == ["tunnel", "--no-autoupdate"]
    assert argv[argv.index("--metrics") + 1].startswith("127.0.0.1:")
    assert argv[argv.index("--url") + 1] == f"http://127.0.0.1:{ingress.port}"
    assert "run" not in argv and run["token_env"] == ""
    assert server.host.tunnels.status == up


async def test_requests_through_the_tunnel_carry_the_callers_address_and_direct_ones_cannot_fake_it(
        make_tunnelled, fake_cloudflared):
    server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    await events.wait_for(lambda e: e.state == "up")
    key = server.keys["voka"]
    edge = fake_cloudflared.edge()
    body = {"name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}}
    async with server.session.post(edge + "/query", json=body, headers={
            "x-api-key": key, "CF-Connecting-IP": "6.6.6.6", "X-Forwarded-For": "7.7.7.7"}) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["data"][0]["quantity"] == 3
    # a direct caller writing the same headers is not believed
    async with server.session.post(server.url + "/query", json=body, headers={
            "x-api-key": key, "CF-Connecting-IP": "6.6.6.6", "X-Forwarded-For": "7.7.7.7"}) as response:
        assert response.status == 200
    rows = [r for r in await audit_rows(server) if r["route"] == "/query"]
    assert [r["client"] for r in reversed(rows)] == [DEFAULT_CLIENT, "127.0.0.1"]


async def test_the_tunnels_public_name_passes_the_host_check_only_through_the_tunnel(make_tunnelled, fake_cloudflared):
    server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    up = await events.wait_for(lambda e: e.state == "up")
    name = up.public_url.removeprefix("https://")
    async with server.session.get(fake_cloudflared.edge() + "/health") as response:
        assert response.status == 200  # arrived with Host: <name> through the ingress
    async with server.session.get(server.url + "/health", headers={"Host": name}) as response:
        assert response.status == 403  # the same name on the server's own port: DNS rebinding protection


async def test_a_dead_cloudflared_is_restarted_and_a_quick_tunnels_new_address_is_reported(
        make_tunnelled, fake_cloudflared):
    server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    first = await events.wait_for(lambda e: e.state == "up")
    pid = fake_cloudflared.runs()[0]["pid"]
    fake_cloudflared.die()
    down = await events.wait_for(lambda e: e.state == "down")
    assert "cloudflared stopped (exit status 1)" in down.message and "told to die" in down.message
    assert "Trying again in" in down.message
    second = await events.wait_for(lambda e: e.state == "up", after=events.events.index(down))
    assert second.public_url != first.public_url and second.url_changed is True
    assert len(fake_cloudflared.runs()) == 2 and not alive(pid)
    # the new name works at once, the old one is forgotten by the Host check
    assert server.bridge.tunnel_ingress.public_host == second.public_url.removeprefix("https://")
    async with server.session.get(fake_cloudflared.edge(-1) + "/health") as response:
        assert response.status == 200
    assert server.host.tunnels.supervisor.restarts == 1
    # the next start remembers the last address (status file): a new one is a change again
    assert server.host.tunnels.status_file.last_url("cloudflare-quick") == second.public_url


async def test_restarts_back_off_exponentially(make_tunnelled, fake_cloudflared):
    _server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    await events.wait_for(lambda e: e.state == "up")
    for _ in range(3):
        start = len(events.events)
        fake_cloudflared.die()
        await events.wait_for(lambda e: e.state == "down", after=start)
        await events.wait_for(lambda e: e.state == "up", after=start)
    waits = [e.message.rsplit("Trying again in ", 1)[1] for e in events.events if e.state == "down"]
    assert waits == ["0.05 s.", "0.1 s.", "0.2 s."]  # up for less than stable_after: no reset


async def test_a_lost_edge_connection_is_down_then_up_without_a_restart(make_tunnelled, fake_cloudflared):
    _server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    up = await events.wait_for(lambda e: e.state == "up")
    fake_cloudflared.unready(True)
    down = await events.wait_for(lambda e: e.state == "down")
    assert "reconnecting" in down.message and down.public_url == up.public_url
    fake_cloudflared.unready(False)
    again = await events.wait_for(lambda e: e.state == "up", after=events.events.index(down))
    assert again.public_url == up.public_url
    assert len(fake_cloudflared.runs()) == 1


async def test_named_tunnel_gets_its_token_from_the_keyring_through_the_environment(
        make_tunnelled, fake_cloudflared, monkeypatch):
    secrets.store("cloudflare", f"cloudflared.exe service install {TOKEN}")  # pasted as the dashboard shows it
    try:
        ingress_port = free_port()  # fixed: the service address written in Cloudflare's dashboard
        monkeypatch.setenv("FAKE_CLOUDFLARED_ORIGIN", f"http://127.0.0.1:{ingress_port}")
        monkeypatch.setenv("FAKE_CLOUDFLARED_HOSTNAME", "voka.shop.example")
        monkeypatch.setenv("TUNNEL_TOKEN", "a-stale-token-from-the-environment")  # the keyring wins
        server, events = await make_tunnelled({"provider": "cloudflare-named", "domain": "voka.shop.example",
                                               "ingress_port": ingress_port})
        up = await events.wait_for(lambda e: e.state == "up")
    finally:
        secrets.delete("cloudflare")
    assert server.bridge.tunnel_ingress.port == ingress_port
    assert up.public_url == "https://voka.shop.example"
    run = fake_cloudflared.runs()[-1]
    assert run["argv"][-1] == "run" and "--url" not in run["argv"]
    assert TOKEN not in " ".join(run["argv"]) and "--token" not in run["argv"]
    assert run["token_env"] == TOKEN
    async with server.session.post(fake_cloudflared.edge() + "/query", json={
            "name": "check_inventory", "params": {"product_id": "JKT-BLU-M"}},
            headers={"x-api-key": server.keys["voka"]}) as response:
        assert response.status == 200
    rows = [r for r in await audit_rows(server) if r["route"] == "/query"]
    assert rows[0]["client"] == DEFAULT_CLIENT


async def test_named_tunnel_without_a_token_fails_with_what_to_do(make_tunnelled, fake_cloudflared, monkeypatch):
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    SecretStore().delete(secrets.ACCOUNTS["cloudflare"])
    server, events = await make_tunnelled({"provider": "cloudflare-named", "domain": "voka.shop.example"})
    failed = await events.wait_for(lambda e: e.state == "failed")
    assert failed.message == MISSING_TOKEN
    assert fake_cloudflared.runs() == []  # nothing was started
    assert server.host.tunnels.supervisor.running is False  # no retry loop for what only the owner can fix


async def test_a_refused_token_fails_without_retrying(make_tunnelled, fake_cloudflared, monkeypatch):
    monkeypatch.setenv("TUNNEL_TOKEN", TOKEN)  # headless: the token from the environment
    monkeypatch.setenv("FAKE_CLOUDFLARED_REFUSE", "1")
    SecretStore().delete(secrets.ACCOUNTS["cloudflare"])
    server, events = await make_tunnelled({"provider": "cloudflare-named", "domain": "voka.shop.example"})
    failed = await events.wait_for(lambda e: e.state == "failed")
    assert failed.message.startswith("Cloudflare refused the tunnel token")
    assert "Provided Tunnel token is not valid" in failed.message and TOKEN not in failed.message
    assert server.host.tunnels.supervisor.running is False


async def test_stop_ends_the_process_and_says_stopped(make_tunnelled, fake_cloudflared):
    server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    await events.wait_for(lambda e: e.state == "up")
    pid = fake_cloudflared.runs()[0]["pid"]
    await server.host.tunnels.stop()
    assert events.events[-1].state == "stopped" and events.events[-1].public_url == ""
    assert server.bridge.tunnel_ingress is None
    await until(lambda: not alive(pid), 10)
    # the server itself serves on
    async with server.session.get(server.url + "/health") as response:
        assert response.status == 200


async def test_server_stop_stops_the_tunnel_after_the_requests_in_flight(make_tunnelled, fake_cloudflared):
    server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    await events.wait_for(lambda e: e.state == "up")
    pid = fake_cloudflared.runs()[0]["pid"]
    await server.host.stop()
    assert events.states()[-1] == "stopped"
    await until(lambda: not alive(pid), 10)
    status = server.host.tunnels.status_file.read()
    assert status["running"] is False and status["state"] == "stopped"


@pytest.mark.skipif(sys.platform == "win32", reason="the PATH stand-in is a shell script")
async def test_cloudflared_is_found_on_path(make_tunnelled, fake_cloudflared_on_path):
    server, events = await make_tunnelled({"provider": "cloudflare-quick"})
    up = await events.wait_for(lambda e: e.state == "up")
    assert up.public_url == f"https://{fake_cloudflared_on_path.runs()[0]['hostname']}"
    config = server.bridge.paths.data_dir / "tunnel" / "cloudflared.yml"
    assert fake_cloudflared_on_path.runs()[0]["config"] == str(config) and config.is_file()
