"""The keyring wrapper against the real Secret Service: calls from many threads, and a daemon that crashes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.keys import KeyStore
from server.secretstore import SecretStore
from server.state import connect_state
from tests.keyring_session import KeyringSession
from tests.unavailable import unavailable


@pytest.fixture
def gnome_keyring(real_keyring: KeyringSession | None) -> KeyringSession:
    if real_keyring is None:
        unavailable("needs the private GNOME Keyring (gnome-keyring-daemon and dbus-daemon, Linux)")
    return real_keyring


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    conn = connect_state(tmp_path / "state.sqlite3")
    yield KeyStore(conn)
    conn.close()


def test_many_threads_at_once_each_get_their_own_secrets(gnome_keyring: KeyringSession) -> None:
    """Concurrent connections from one process drew spurious errors from GNOME Keyring; the store makes
    its calls one at a time and tries a failed one again, so every thread sees exactly its own values."""
    secrets = SecretStore("voka-bridge-threads-test")
    wrong: list[str] = []

    def work(thread: int) -> None:
        for round_ in range(15):
            account, value = f"t{thread}-{round_ % 3}", f"secret-{thread}-{round_}"
            secrets.set(account, value)
            if secrets.get(account) != value:
                wrong.append(account)
            if round_ % 3 == 2:
                secrets.delete(account)
                if secrets.get(account) is not None:
                    wrong.append(f"{account} still there")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_key_is_created_right_after_the_keyring_daemon_crashed(gnome_keyring: KeyringSession,
                                                                 store: KeyStore) -> None:
    """While the session restarts a crashed daemon the service is missing from the bus for a moment;
    the store tries again instead of failing the owner's action, and what was stored before is kept."""
    _, before = store.create("before", ("query",))
    crashed = gnome_keyring.crash_daemon()
    _, after = store.create("after", ("query",))
    assert gnome_keyring.daemon is not None and gnome_keyring.daemon.pid != crashed
    assert store.secret("before") == before
    assert store.secret("after") == after
