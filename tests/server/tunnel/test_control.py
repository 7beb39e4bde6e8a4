"""What the desktop app calls (TunnelControl on the server thread), [tunnel] in config.toml applied live,
the status file `voka-bridge tunnel status` reads, and [tunnel]'s validation."""

from __future__ import annotations

import asyncio
import tomllib

import pytest

from server.bridge import Bridge
from server.config import Config, ConfigError, load_config
from server.config_edit import write_settings
from server.embedded import EmbeddedServer
from server.events import TunnelChanged
from server.host import ThreadedServerHost
from server.secretstore import SecretStore
from server.tunnel import secrets
from server.tunnel.status import StatusFile, live, read_config
from tests.server.tunnel.conftest import Recorder, until

TOKEN = "eyJhIjoiYWNjb3VudCIsInQiOiJ0dW5uZWwtaWQiLCJzIjoidHVubmVsLXNlY3JldCJ9"


def tunnel_section(home) -> dict:
    return tomllib.loads(home.config_file.read_text()).get("tunnel", {}) if home.config_file.exists() else {}


@pytest.fixture
def threaded(home):
    cfg = Config.model_validate({"server": {"port": 0, "check_public_url": False}})
    host = ThreadedServerHost(Bridge(home, cfg, database_url="sqlite:///" + home.demo_db.as_posix().lstrip("/")))
    recorder = Recorder()
    host.host.bridge.events.subscribe(recorder)
    host.recorder = recorder
    yield host
    if host.host.runner is not None:
        host.stop()
    host.close()


async def wait_state(threaded, state: str, timeout: float = 15) -> TunnelChanged:
    return await until(lambda: threaded.tunnel.status().state == state and threaded.tunnel.status(), timeout)


async def test_the_app_starts_and_stops_the_tunnel_from_its_own_thread(threaded, home, stand_in_ngrok):
    threaded.start()
    assert threaded.tunnel.status().state == "stopped"
    started = await asyncio.wrap_future(threaded.tunnel.start("ngrok", "https://Shop.ngrok.app/"))
    assert started.provider == "ngrok"
    up = await wait_state(threaded, "up")
    assert up.public_url.startswith("http://127.0.0.1:")
    assert tunnel_section(home) == {"provider": "ngrok", "domain": "shop.ngrok.app"}
    assert stand_in_ngrok.instances[-1].spec.domain == "shop.ngrok.app"
    assert [e.state for e in threaded.recorder.events][-1] == "up"
    await asyncio.wrap_future(threaded.tunnel.stop())
    assert threaded.tunnel.status().state == "stopped"
    assert tunnel_section(home) == {"domain": "shop.ngrok.app"}  # kept for next time


async def test_a_bad_choice_fails_the_future_with_what_is_wrong(threaded, home):
    threaded.start()
    with pytest.raises(ConfigError, match="needs its public host name"):
        await asyncio.wrap_future(threaded.tunnel.start("cloudflare-named", ""))
    with pytest.raises(ConfigError, match="not a host name"):
        await asyncio.wrap_future(threaded.tunnel.start("ngrok", "not a domain"))
    with pytest.raises(ConfigError):
        await asyncio.wrap_future(threaded.tunnel.start("frp", ""))
    assert tunnel_section(home) == {}


async def test_with_the_server_stopped_the_choice_is_saved_for_its_next_start(threaded, home, stand_in_ngrok):
    saved = await asyncio.wrap_future(threaded.tunnel.start("ngrok"))
    assert saved.state == "stopped" and "starts with the server" in saved.message
    assert tunnel_section(home) == {"provider": "ngrok"}
    threaded.start()
    await wait_state(threaded, "up")


async def test_secrets_are_checked_kept_in_the_keyring_and_never_returned(threaded, monkeypatch):
    monkeypatch.delenv("TUNNEL_TOKEN", raising=False)
    SecretStore().delete(secrets.ACCOUNTS["cloudflare"])
    assert await asyncio.wrap_future(threaded.tunnel.has_secret("cloudflare-named")) is False
    with pytest.raises(ValueError, match="not a Cloudflare tunnel token"):
        await asyncio.wrap_future(threaded.tunnel.set_secret("cloudflare", "hello"))
    with pytest.raises(ValueError, match="not an ngrok authtoken"):
        await asyncio.wrap_future(threaded.tunnel.set_secret("ngrok", "two words"))
    with pytest.raises(ValueError):
        await asyncio.wrap_future(threaded.tunnel.set_secret("cloudflare-quick", TOKEN))  # keeps no secret
    await asyncio.wrap_future(threaded.tunnel.set_secret("cloudflare-named", f"  {TOKEN}\n"))
    try:
        assert SecretStore().get(secrets.ACCOUNTS["cloudflare"]) == TOKEN
        assert await asyncio.wrap_future(threaded.tunnel.has_secret("cloudflare")) is True
    finally:
        await asyncio.wrap_future(threaded.tunnel.delete_secret("cloudflare"))
    assert SecretStore().get(secrets.ACCOUNTS["cloudflare"]) is None


async def test_tunnel_changed_events_reach_the_apps_listeners(home, stand_in_ngrok):
    server = EmbeddedServer(str(home.config_dir), port=0)
    heard: list[object] = []
    server.listen(heard.append)
    try:
        await asyncio.wrap_future(server.start())
        await asyncio.wrap_future(server.tunnel.start("ngrok"))
        await until(lambda: server.tunnel.status().state == "up")
        await until(lambda: any(isinstance(e, TunnelChanged) and e.state == "up" for e in heard))
        # Stop/Start (a settings change) brings the tunnel back with the server
        await asyncio.wrap_future(server.restart())
        await until(lambda: server.tunnel.status().state == "up")
    finally:
        server.close()
    states = [e.state for e in heard if isinstance(e, TunnelChanged)]
    assert states[-1] == "stopped" and states.count("up") >= 2


async def test_config_toml_changes_are_applied_by_the_running_server(make_tunnelled, home, stand_in_ngrok):
    server, events = await make_tunnelled({})
    status_file = StatusFile(home.data_dir / "tunnel.json")
    assert live(status_file.read()) and status_file.read()["state"] == "stopped"
    write_settings(home.config_file, {"tunnel": {"provider": "ngrok"}})  # `voka-bridge tunnel start`
    up = await events.wait_for(lambda e: e.state == "up")
    data = await until(lambda: (d := status_file.read()).get("state") == "up" and d)
    assert data["public_url"] == up.public_url and data["running"] is True
    assert data["applied"] == read_config(home.config_file)[0]
    async with server.session.get(up.public_url + "/health") as response:
        assert response.status == 200
    write_settings(home.config_file, {"tunnel": {"provider": ""}})  # `voka-bridge tunnel stop`
    await events.wait_for(lambda e: e.state == "stopped", after=events.events.index(up))
    assert server.bridge.tunnel_ingress is None
    await server.host.stop()
    assert status_file.read()["running"] is False and not live(status_file.read())


async def test_rewriting_the_config_retries_a_failed_tunnel(make_tunnelled, home, monkeypatch):
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    SecretStore().delete(secrets.ACCOUNTS["ngrok"])
    write_settings(home.config_file, {"tunnel": {"provider": "ngrok"}})
    _server, events = await make_tunnelled({"provider": "ngrok"})
    await events.wait_for(lambda e: e.state == "failed")
    monkeypatch.setenv("NGROK_AUTHTOKEN", "2bogusAuthtoken_ForTheTestOnly1234567")  # the owner fixed it
    monkeypatch.setattr("server.tunnel.ngrok.NgrokTunnel.server_addr", "127.0.0.1:9")
    write_settings(home.config_file, {"tunnel": {"provider": "ngrok"}})  # `voka-bridge tunnel start` again
    retried = await events.wait_for(lambda e: e.state == "down")  # got past the token this time
    assert "Cannot reach ngrok's service" in retried.message


async def test_a_broken_tunnel_section_written_by_hand_is_logged_not_applied(make_tunnelled, home, stand_in_ngrok):
    server, events = await make_tunnelled({"provider": "ngrok"})
    await events.wait_for(lambda e: e.state == "up")
    home.config_file.write_text('[tunnel]\nprovider = "carrier-pigeon"\n')
    await asyncio.sleep(0.5)
    assert events.states()[-1] == "up" and server.host.tunnels.status.state == "up"


def test_tunnel_settings_are_validated_with_clear_errors(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[tunnel]\nprovider = "cloudflare-named"\n')
    with pytest.raises(ConfigError) as named:
        load_config(path)
    assert "tunnel.domain: a named Cloudflare tunnel needs its public host name" in str(named.value)
    path.write_text('[tunnel]\nprovider = "ngrok"\ndomain = "https://Shop.NGROK.app/"\ningress_port = 4100\n')
    settings = load_config(path).tunnel
    assert (settings.provider, settings.domain, settings.ingress_port) == ("ngrok", "shop.ngrok.app", 4100)
    path.write_text('[tunnel]\nprovider = "tailscale"\n')
    with pytest.raises(ConfigError, match=r"tunnel\.provider"):
        load_config(path)
    path.write_text('[tunnel]\ntoken = "secret"\n')
    with pytest.raises(ConfigError, match=r"tunnel\.token: unknown key"):
        load_config(path)
