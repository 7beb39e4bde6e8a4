"""API keys against the real keyring (and without one): hash in state, secret in the keyring where there
is one, rotate, revoke, expiry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest

from server.keys import KeyProblem, KeyStore, KeyVerifier, hash_key, keyring_account
from server.secretstore import keyring_problem
from server.state import connect_state


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    conn = connect_state(tmp_path / "state.sqlite3")
    yield KeyStore(conn)
    conn.close()


def test_keyring_in_tests_is_a_real_backend() -> None:
    assert keyring_problem() is None, keyring.get_keyring()


def test_create_keeps_the_secret_only_in_the_keyring(store: KeyStore, tmp_path: Path) -> None:
    record, secret = store.create("front-desk", ("query",))
    assert record.secret_kept is True
    assert secret.startswith(f"vbk_{record.id}_") and len(secret.split("_", 2)[2]) >= 43
    assert keyring.get_password("voka-bridge", keyring_account(record.id)) == secret
    assert store.secret("front-desk") == secret
    assert record.hash == hash_key(secret)
    state_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("state.sqlite3*"))
    assert secret.encode() not in state_bytes
    assert record.hash.encode() in state_bytes


def test_verify_accepts_only_the_exact_key(store: KeyStore) -> None:
    record, secret = store.create("a", ("query", "sql"))
    verifier = KeyVerifier(store.all())
    principal = verifier.verify(secret)
    assert principal is not None and principal.name == "a" and principal.scopes == {"query", "sql"}
    for wrong in (secret[:-1], secret + "x", secret.upper(), "", f"vbk_{record.id}_", "vbk_", "x" * 60):
        assert verifier.verify(wrong) is None


def test_revoke_takes_effect_and_removes_the_secret(store: KeyStore) -> None:
    record, secret = store.create("gone", ("query",))
    store.revoke("gone")
    assert KeyVerifier(store.all()).verify(secret) is None
    assert keyring.get_password("voka-bridge", keyring_account(record.id)) is None
    assert store.find(record.id).status == "revoked"
    with pytest.raises(KeyProblem):
        store.rotate("gone")


def test_rotate_keeps_the_old_secret_for_the_grace_period(store: KeyStore) -> None:
    _, old = store.create("rot", ("query",))
    record, new = store.rotate("rot", grace_hours=2)
    verifier = KeyVerifier(store.all())
    assert verifier.verify(old) is not None and verifier.verify(new) is not None
    assert record.status == "rotating" and store.secret("rot") == new
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    assert not record.matches(hash_key(old), later) and record.matches(hash_key(new), later)
    _, newest = store.rotate("rot", grace_hours=0)
    verifier = KeyVerifier(store.all())
    assert verifier.verify(new) is None and verifier.verify(newest) is not None


def test_expired_key_is_refused(store: KeyStore) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    _, secret = store.create("old", ("query",), expires_at=past)
    assert KeyVerifier(store.all()).verify(secret) is None and store.find("old").status == "expired"


@pytest.mark.parametrize(("name", "scopes"), [("", ("query",)), ("bad/name", ("query",)), ("ok", ("root",))])
def test_invalid_key_requests_are_refused(store: KeyStore, name: str, scopes: tuple[str, ...]) -> None:
    with pytest.raises(KeyProblem):
        store.create(name, scopes)
    assert store.all() == []


def test_duplicate_names_are_refused(store: KeyStore) -> None:
    store.create("dup")
    with pytest.raises(KeyProblem, match="already exists"):
        store.create("dup")


def test_without_a_keyring_a_key_is_its_hash_in_state(store: KeyStore, tmp_path: Path, no_keyring: None
                                                       ) -> None:
    record, secret = store.create("headless", ("query",))
    assert record.secret_kept is False and record.hash == hash_key(secret)
    principal = KeyVerifier(store.all()).verify(secret)
    assert principal is not None and principal.name == "headless"
    assert store.secret("headless") is None
    rotated, new = store.rotate("headless", grace_hours=0)
    assert rotated.secret_kept is False
    verifier = KeyVerifier(store.all())
    assert verifier.verify(new) is not None and verifier.verify(secret) is None
    state_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("state.sqlite3*"))
    assert secret.encode() not in state_bytes and new.encode() not in state_bytes


def test_the_keyring_never_gives_back_a_secret_that_is_no_longer_the_key(store: KeyStore) -> None:
    record, old = store.create("moved", ("query",))
    assert record.secret_kept is True
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        _, new = store.rotate("moved", grace_hours=0)  # made where the keyring was out of reach
    finally:
        keyring.set_keyring(previous)
    assert keyring.get_password("voka-bridge", keyring_account(record.id)) == old
    assert store.secret("moved") is None
    assert KeyVerifier(store.all()).verify(new) is not None


def test_rename_keeps_the_secret_and_follows_the_name_rules(store: KeyStore) -> None:
    record, secret = store.create("front desk", ("query",))
    store.create("phone bot", ("query",))
    renamed = store.rename("front desk", "counter")
    assert (renamed.id, renamed.name, renamed.hash) == (record.id, "counter", record.hash)
    assert store.secret("counter") == secret
    principal = KeyVerifier(store.all()).verify(secret)
    assert principal is not None and principal.name == "counter"
    assert store.rename(record.id, "counter").name == "counter"  # its own name again is fine
    with pytest.raises(KeyProblem, match="already exists"):
        store.rename("counter", "phone bot")
    for bad in ("", " leading space", "x" * 65, "semi;colon", "new\nline"):
        with pytest.raises(KeyProblem, match="key name"):
            store.rename("counter", bad)
    with pytest.raises(KeyProblem, match="no key"):
        store.rename("nobody", "fine")
    assert [k.name for k in store.all()] == ["counter", "phone bot"]
