"""Webhooks to Voka (DESIGN section 10) against a real receiver on a real port: signed deliveries of the
events tools.toml names, only for actions that committed; retries with back-off through failures,
timeouts and a receiver that is down across a server restart, none lost and every duplicate under its
first webhook-id; dead letters after max age, listed and resent from the CLI."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from server.events import WebhookDelivered, WebhookFailed
from server.webhooks import outbox, secrets, signing
from server.webhooks.delivery import backoff
from tests.conftest import RunningServer, free_port
from tests.server.http.test_rest import snapshot
from tests.server.webhook_receiver import Receiver, verify

VOKA_KEY = "voka_live_test_key_0123456789abcdef"
ORDER = {"action": "create_order", "params": {"customer_id": 3,
                                              "items": [{"product_id": "SWT-NVY-M", "quantity": 1}]}}


def webhook_config(url: str, **extra: Any) -> dict[str, Any]:
    return {"webhooks": {"url": url, "first_retry_seconds": 0.2, "timeout_seconds": 1.0, **extra}}


@pytest.fixture
def receiver() -> Any:
    running = Receiver(free_port()).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def voka_key() -> Any:
    secrets.set_voka_api_key(VOKA_KEY)
    yield
    secrets.delete_voka_api_key()


def collect(server: RunningServer) -> list[Any]:
    seen: list[Any] = []
    server.bridge.events.subscribe(lambda e: seen.append(e) if isinstance(e, WebhookDelivered | WebhookFailed)
                                   else None)
    return seen


async def outbox_rows(server: RunningServer, *statuses: str) -> list[outbox.Message]:
    wanted = statuses or (outbox.HELD, outbox.PENDING, outbox.DEAD, outbox.DELIVERED)
    return await server.bridge.on_state(outbox.listing, server.bridge.state, wanted)


async def test_a_committed_action_sends_its_event_signed_with_voka_key(make_server, receiver):
    server = await make_server(webhook_config(receiver.url))
    key = await server.create_key("writer", ("query", "action"))
    status, body, _ = await server.post("/action", ORDER, key=key)
    assert status == 200
    status, customer, _ = await server.post("/action", {"action": "create_customer", "params": {
        "name": "Hook Test", "phone": "+15550009999"}}, key=key)
    assert status == 200
    seen = await receiver.await_for(lambda d: len(d) >= 2)
    secret = secrets.signing_secret()
    assert secret is not None and secret.startswith("whsec_")
    by_event = {d.json["event"]: d for d in seen}
    assert set(by_event) == {"order.created", "customer.created"}
    order = by_event["order.created"]
    assert order.json["data"] == body["data"]
    assert by_event["customer.created"].json["data"] == customer["data"]
    assert order.json["timestamp"].endswith("+00:00")
    for delivery in seen:
        assert verify(secret, delivery)
        assert delivery.headers["x-api-key"] == VOKA_KEY
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.id.startswith("msg_")
    tampered = type(order)(dict(order.headers), order.body.replace(b"order", b"ORDER"), "ok")
    assert not verify(secret, tampered)
    assert [m.status for m in await outbox_rows(server)] == [outbox.DELIVERED] * 2


async def test_an_action_that_rolls_back_sends_nothing_and_events_are_off_without_a_url(make_server, receiver):
    server = await make_server(webhook_config(receiver.url))
    key = await server.create_key("writer", ("query", "action"))
    short = {"action": "create_order", "params": {"customer_id": 3,
                                                  "items": [{"product_id": "SWT-NVY-M", "quantity": 1000}]}}
    before = snapshot(server)
    status, body, _ = await server.post("/action", short, key=key, headers={"Idempotency-Key": "short-1"})
    assert (status, body["code"]) == (409, "insufficient_stock")
    assert snapshot(server) == before
    await asyncio.sleep(1.2)
    assert receiver.received() == [] and await outbox_rows(server) == []
    traces = await server.bridge.on_state(
        lambda: server.bridge.state.execute("SELECT count(*) FROM intents").fetchone()[0])
    assert traces == 0
    await server.host.stop()
    quiet = await make_server()  # [webhooks] url empty: nothing is recorded
    quiet_key = await quiet.create_key("writer2", ("query", "action"))
    assert (await quiet.post("/action", ORDER, key=quiet_key))[0] == 200
    assert await outbox_rows(quiet) == []


async def test_failures_and_timeouts_are_retried_under_the_same_webhook_id(make_server):
    receiver = Receiver(free_port(), script=["fail", "hang", "fail"], hang_seconds=2.0).start()
    try:
        server = await make_server(webhook_config(receiver.url))
        events = collect(server)
        key = await server.create_key("writer", ("query", "action"))
        assert (await server.post("/action", ORDER, key=key))[0] == 200
        seen = await receiver.await_for(lambda d: any(x.answered == "ok" for x in d))
        assert [d.answered for d in seen] == ["fail", "hang", "fail", "ok"]
        assert len({d.id for d in seen}) == 1  # every attempt, the timed-out one included, is one message
        assert len({d.body for d in seen}) == 1
        secret = secrets.signing_secret()
        assert secret is not None and all(verify(secret, d) for d in seen)
        gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(seen)]
        assert all(gap >= 0.09 for gap in gaps)  # a pause before each retry (0.1-0.2 s, then longer)
        await asyncio.sleep(0.2)
        failed = [e for e in events if isinstance(e, WebhookFailed)]
        assert [e.attempts for e in failed] == [1, 2, 3] and not any(e.dead for e in failed)
        assert failed[0].status == 500 and failed[1].status is None and "no answer" in failed[1].error
        delivered = [e for e in events if isinstance(e, WebhookDelivered)]
        assert len(delivered) == 1 and delivered[0].attempts == 4 and delivered[0].message_id == seen[0].id
        assert [m.status for m in await outbox_rows(server)] == [outbox.DELIVERED]
    finally:
        receiver.stop()


async def test_nothing_is_lost_while_the_receiver_is_down_across_a_server_restart(make_server, home):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/voka"
    first = await make_server(webhook_config(url))
    key = await first.create_key("writer", ("query", "action"))
    for _ in range(3):
        assert (await first.post("/action", ORDER, key=key))[0] == 200
    await asyncio.sleep(0.8)  # a few failed attempts against the closed port
    waiting = await outbox_rows(first, outbox.PENDING)
    assert len(waiting) == 3 and all(m.attempts >= 1 for m in waiting)
    assert all("cannot reach" in (m.last_error or "") for m in waiting)
    await first.host.stop()
    receiver = Receiver(port).start()
    try:
        second = await make_server(webhook_config(url))
        seen = await receiver.await_for(lambda d: len({x.id for x in d}) >= 3)
        assert {d.id for d in seen} == {m.id for m in waiting}
        assert {d.body for d in seen} == {m.body.encode() for m in waiting}
        await asyncio.sleep(0.3)
        assert [m.status for m in await outbox_rows(second)] == [outbox.DELIVERED] * 3
    finally:
        receiver.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ})


async def test_a_dead_letter_after_max_age_is_listed_and_resent_from_the_cli(make_server, home):
    receiver = Receiver(free_port(), script=["fail"] * 100).start()
    try:
        server = await make_server(webhook_config(receiver.url, max_age_hours=0.0004))  # 1.44 s
        events = collect(server)
        key = await server.create_key("writer", ("query", "action"))
        assert (await server.post("/action", ORDER, key=key))[0] == 200
        deadline = time.monotonic() + 10
        while not (dead := await outbox_rows(server, outbox.DEAD)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(dead) == 1 and dead[0].attempts >= 2 and "HTTP 500" in (dead[0].last_error or "")
        assert any(isinstance(e, WebhookFailed) and e.dead for e in events)
        attempts = len(receiver.received())
        await asyncio.sleep(0.5)
        assert len(receiver.received()) == attempts  # a dead letter is not retried

        listed = await asyncio.to_thread(run_cli, "webhooks", "list", "--home", str(home.config_dir))
        assert listed.returncode == 0, listed.stderr
        assert dead[0].id in listed.stdout and "dead" in listed.stdout and "HTTP 500" in listed.stdout

        receiver.script.clear()  # the receiver works again
        resent = await asyncio.to_thread(run_cli, "webhooks", "resend", dead[0].id[:12], "--home",
                                         str(home.config_dir))
        assert resent.returncode == 0, resent.stderr
        assert dead[0].id in resent.stdout
        seen = await receiver.await_for(lambda d: d[-1].answered == "ok", timeout=10)
        assert seen[-1].id == dead[0].id and seen[-1].body == dead[0].body.encode()
        deadline = time.monotonic() + 5
        while (await outbox_rows(server))[0].status != outbox.DELIVERED and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (await outbox_rows(server))[0].status == outbox.DELIVERED
        missing = await asyncio.to_thread(run_cli, "webhooks", "resend", "msg_nope", "--home",
                                          str(home.config_dir))
        assert missing.returncode == 1 and "no webhook message" in missing.stderr
    finally:
        receiver.stop()


def test_the_secret_command_creates_once_and_shows_the_same_secret(tmp_path) -> None:
    first = run_cli("webhooks", "secret", "--home", str(tmp_path / "home"))
    second = run_cli("webhooks", "secret", "--home", str(tmp_path / "home"))
    assert first.returncode == second.returncode == 0, first.stderr
    secret = first.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and secret == second.stdout.strip().splitlines()[-1]
    assert len(signing.secret_key(secret)) == signing.SECRET_BYTES
    assert secrets.signing_secret() == secret
    home_files = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert all(secret.encode() not in p.read_bytes() for p in home_files)


def test_set_key_reads_standard_input_and_keeps_it_in_the_keyring(tmp_path) -> None:
    stored = subprocess.run([sys.executable, "-m", "server.cli", "webhooks", "set-key", "--home",
                             str(tmp_path / "home")], input="voka_other_key_42\n", capture_output=True,
                            text=True, timeout=60)
    assert stored.returncode == 0, stored.stderr
    assert "voka_other_key_42" not in stored.stdout + stored.stderr
    assert secrets.voka_api_key() == "voka_other_key_42"


def test_signing_matches_the_standard_webhooks_example() -> None:
    """The example in the Standard Webhooks specification's reference implementations' tests."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    with pytest.raises(ValueError):
        signing.secret_key("not-a-secret")


def test_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    lows = [backoff(n, 5.0, lambda a, b: a) for n in range(1, 14)]
    highs = [backoff(n, 5.0, lambda a, b: b) for n in range(1, 14)]
    assert highs[:4] == [5.0, 10.0, 20.0, 40.0] and lows[:2] == [2.5, 5.0]
    assert max(highs) == 3600.0
    assert all(low * 2 == high for low, high in zip(lows, highs, strict=True))


def test_events_are_validated_in_the_catalog() -> None:
    from server.catalog import Catalog
    from server.config import ConfigError

    base = {"kind": "action", "description": "d", "sql": "DELETE FROM orders"}
    assert Catalog.from_dict({"tools": {"t": {**base, "events": ["order.deleted"]}}}).get("t").events == (
        "order.deleted",)
    for bad in (["Order Created"], ["created"], ["order..x"]):
        with pytest.raises(ConfigError, match="event"):
            Catalog.from_dict({"tools": {"t": {**base, "events": bad}}})
    with pytest.raises(ConfigError, match="only actions"):
        Catalog.from_dict({"tools": {"q": {"kind": "query", "description": "d", "sql": "SELECT 1",
                                           "events": ["x.y"]}}})


def test_the_body_is_the_documented_shape() -> None:
    import datetime as dt

    body = json.loads(outbox.body_for("order.created", {"id": 7}, dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)))
    assert body == {"event": "order.created", "data": {"id": 7}, "timestamp": "2025-01-02T03:04:05.000+00:00"}
