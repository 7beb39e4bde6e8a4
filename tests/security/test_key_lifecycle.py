"""API keys on the live server: shape and entropy, hashing, allowlists, per-key limits, expiry, rotation
with a grace period, revocation from another process, and last-used tracking (DESIGN section 8)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import time
from typing import Any

import server.keys as keys_module
from server.keys import KeyStore, KeyVerifier, hash_key, new_secret
from server.paths import Paths
from server.state import connect_state
from tests.conftest import RunningServer
from tests.security.conftest import audit_rows, run_cli

INVENTORY = {"name": "check_inventory", "params": {"product_id": "SCF-RED"}}
KEY_SHAPE = re.compile(r"^vbk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


async def wait_for_status(server: RunningServer, key: str, wanted: int, within: float = 3.0) -> None:
    """Wait until the server's key check accepts (or refuses) `key`, then see `wanted` over HTTP; fails if
    that takes longer than `within` seconds. The wait looks at the running server's verifier rather than
    polling with requests: 401s at 20 per second would trip the failed-auth throttle (10 a minute) while
    the key watcher (every second) has not yet picked up the change, and turn the answer into a 429."""
    started = time.monotonic()
    accept = wanted != 401
    while (server.bridge.verifier.verify(key) is not None) != accept:
        assert time.monotonic() - started < within, f"not {'accepted' if accept else 'refused'} after {within} s"
        await asyncio.sleep(0.05)
    status, _, _ = await server.post("/query", INVENTORY, key=key)
    assert status == wanted


def test_keys_are_prefixed_with_at_least_128_random_bits() -> None:
    secrets = [new_secret("0123456789ab") for _ in range(2000)]
    assert len(set(secrets)) == len(secrets)
    for secret in secrets[:50]:
        match = KEY_SHAPE.match(secret)
        assert match, secret
        assert len(base64.urlsafe_b64decode(match.group(2) + "=")) * 8 >= 128
    # Every position of the random part varies: no fixed or low-entropy stretches.
    randoms = [KEY_SHAPE.match(s).group(2) for s in secrets]  # type: ignore[union-attr]
    for position in range(42):  # the 43rd character carries only 4 bits
        assert len({r[position] for r in randoms}) > 40


def test_state_keeps_a_hash_and_the_keyring_keeps_the_key(home: Paths) -> None:
    conn = connect_state(home.state_db)
    store = KeyStore(conn)
    record, secret = store.create("till", ("query",))
    conn.close()
    assert KEY_SHAPE.match(secret) and KEY_SHAPE.match(secret).group(1) == record.id  # type: ignore[union-attr]
    assert record.hash == hash_key(secret) != secret
    for path in home.data_dir.glob("state.sqlite3*"):
        data = path.read_bytes()
        assert secret.encode() not in data and secret.split("_", 2)[2].encode() not in data
    conn = connect_state(home.state_db)
    assert KeyStore(conn).secret("till") == secret
    conn.close()


def test_verification_compares_hashes_in_constant_time(home: Paths, monkeypatch: Any) -> None:
    conn = connect_state(home.state_db)
    record, secret = KeyStore(conn).create("till", ("query",))
    conn.close()
    compared: list[tuple[Any, Any]] = []
    real = keys_module.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", spy)
    verifier = KeyVerifier([record])
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert verifier.verify(wrong) is None
    assert verifier.verify(secret) is not None
    assert compared, "keys must be compared with hmac.compare_digest"
    # What is compared are fixed-length digests, never the raw key (so length and prefix leak nothing).
    assert all(len(a) == len(b) == 64 and secret not in (a, b) for a, b in compared)


async def test_allowlist_limits_a_key_to_named_tools(server: RunningServer) -> None:
    key = await server.create_key("inventory-only", ("query",), tools=("check_inventory",))
    assert (await server.post("/query", INVENTORY, key=key))[0] == 200
    status, body, _ = await server.post("/query", {"name": "find_customer_by_phone",
                                                   "params": {"phone": "+15551234567"}}, key=key)
    # Outside the allowlist a tool does not exist for this key: nothing confirms what else is there.
    assert (status, body["code"]) == (404, "unknown_tool")
    _, doc, _ = await server.get("/openapi.json", key=key)
    listed = [s["properties"]["name"]["const"] for s in doc["components"]["schemas"]["QueryParams"]["oneOf"]]
    assert listed == ["check_inventory"]


async def test_per_key_rate_limit_overrides_the_default(server: RunningServer) -> None:
    slow = await server.create_key("slow", ("query",), rate_limit=2)
    statuses = [(await server.post("/query", INVENTORY, key=slow))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    status, _, response = await server.post("/query", INVENTORY, key=server.keys["reader"])
    assert status == 200 and response.headers["RateLimit-Limit"] == "120"


async def test_an_expired_key_stops_working_on_its_own(server: RunningServer) -> None:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    key = await server.create_key("temp", ("query",), expires_at=expires)
    assert (await server.post("/query", INVENTORY, key=key))[0] == 200
    await wait_for_status(server, key, 401, within=5)
    reasons = [r["detail"] for r in await audit_rows(server.bridge) if r["status"] == 401]
    assert any(r and r.startswith("expired key") for r in reasons)


async def test_rotate_with_grace_keeps_both_secrets_then_only_the_new(server: RunningServer,
                                                                     home: Paths) -> None:
    old = server.keys["reader"]
    done = await asyncio.to_thread(run_cli, "keys", "rotate", "reader", "--grace", "0.0008",
                                   "--home", str(home.config_dir))
    assert done.returncode == 0, done.stderr
    new = done.stdout.strip().splitlines()[-1]
    assert KEY_SHAPE.match(new) and new != old
    await wait_for_status(server, new, 200)  # the running server picked up the new secret
    assert (await server.post("/query", INVENTORY, key=old))[0] == 200  # still in its grace period
    await wait_for_status(server, old, 401, within=6)  # 0.0008 h = 2.9 s
    assert (await server.post("/query", INVENTORY, key=new))[0] == 200
    reasons = [r["detail"] for r in await audit_rows(server.bridge) if r["status"] == 401]
    assert any(r and r.startswith("rotated-out secret") for r in reasons)


async def test_rotate_without_grace_kills_the_old_secret_at_once(server: RunningServer, home: Paths) -> None:
    old = server.keys["writer"]
    done = await asyncio.to_thread(run_cli, "keys", "rotate", "writer", "--grace", "0",
                                   "--home", str(home.config_dir))
    assert done.returncode == 0, done.stderr
    await wait_for_status(server, old, 401, within=3)


async def test_revoke_from_another_process_takes_effect_within_a_second(server: RunningServer,
                                                                       home: Paths) -> None:
    key = server.keys["analyst"]
    assert (await server.post("/query", INVENTORY, key=key))[0] == 200
    done = await asyncio.to_thread(run_cli, "keys", "revoke", "analyst", "--home", str(home.config_dir))
    assert done.returncode == 0, done.stderr
    await wait_for_status(server, key, 401, within=3)  # the watcher polls state.sqlite3 every second
    for _ in range(3):  # replaying the revoked key never works again
        status, body, _ = await server.post("/query", INVENTORY, key=key)
        assert (status, body) == (401, {"success": False, "error": "Unauthorized", "code": "unauthorized"})
    reasons = [r["detail"] for r in await audit_rows(server.bridge) if r["status"] == 401]
    assert sum(1 for r in reasons if r and r.startswith("revoked key")) >= 3
    conn = connect_state(home.state_db)
    assert KeyStore(conn).secret("analyst") is None  # gone from the keyring too
    conn.close()


async def test_last_used_time_and_count_show_in_keys_list(server: RunningServer, home: Paths) -> None:
    key = await server.create_key("counted", ("query",))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for _ in range(3):
        assert (await server.post("/query", INVENTORY, key=key))[0] == 200
    await server.post("/query", {"query": "SELECT 1"}, key=key)  # 403: refused calls are not uses
    await server.bridge.audit.flush()
    listing = await asyncio.to_thread(run_cli, "keys", "list", "--home", str(home.config_dir))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if " counted " in line)
    fields = row.split()
    assert fields[-2] == "3"
    assert dt.datetime.fromisoformat(fields[-1]) >= before
    untouched = next(line for line in listing.stdout.splitlines() if " writer " in line)
    assert untouched.split()[-2:] == ["0", "never"]
