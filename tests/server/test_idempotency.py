"""Idempotency-Key on actions: a retried order is placed once; a reused key with another body is a 409."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from server.idempotency import ABANDONED, IdempotencyStore
from server.state import connect_state
from tests.conftest import RunningServer
from tests.server.http.test_rest import snapshot, stock

ORDER = {"action": "create_order", "params": {"customer_id": 3,
                                              "items": [{"product_id": "SWT-NVY-M", "quantity": 1}]}}


async def test_a_retry_gets_the_first_answer_and_writes_nothing(server: RunningServer) -> None:
    key = server.keys["writer"]
    before = stock(server, "SWT-NVY-M")
    first = await server.post("/action", ORDER, key=key, headers={"Idempotency-Key": "call-123-order"})
    after_first = snapshot(server)
    second = await server.post("/action", ORDER, key=key, headers={"Idempotency-Key": "call-123-order"})
    assert first[0] == second[0] == 200
    assert first[1] == second[1]
    assert snapshot(server) == after_first
    assert stock(server, "SWT-NVY-M") == before - 1


async def test_concurrent_duplicates_run_once(server: RunningServer) -> None:
    key = server.keys["writer"]
    before = stock(server, "SWT-NVY-M")
    results = await asyncio.gather(*(server.post("/action", ORDER, key=key, headers={"Idempotency-Key": "burst"})
                                     for _ in range(10)))
    assert {status for status, _, _ in results} == {200}
    assert len({body["data"]["id"] for _, body, _ in results}) == 1
    assert stock(server, "SWT-NVY-M") == before - 1


async def test_same_key_different_body_is_409(server: RunningServer) -> None:
    key = server.keys["writer"]
    await server.post("/action", ORDER, key=key, headers={"Idempotency-Key": "k1"})
    before = snapshot(server)
    other = {"action": "create_order", "params": {**ORDER["params"], "customer_id": 4}}
    status, body, _ = await server.post("/action", other, key=key, headers={"Idempotency-Key": "k1"})
    assert (status, body["code"]) == (409, "idempotency_conflict")
    assert snapshot(server) == before


async def test_keys_are_per_api_key_and_validated(server: RunningServer) -> None:
    await server.post("/action", ORDER, key=server.keys["writer"], headers={"Idempotency-Key": "shared"})
    before = stock(server, "SWT-NVY-M")
    status, _, _ = await server.post("/action", ORDER, key=server.keys["analyst"], headers={"Idempotency-Key": "shared"})
    assert status == 200 and stock(server, "SWT-NVY-M") == before - 1
    status, body, _ = await server.post("/action", ORDER, key=server.keys["writer"],
                                        headers={"Idempotency-Key": "bad key with spaces"})
    assert (status, body["code"]) == (400, "invalid_idempotency_key")


async def test_a_duplicate_on_another_worker_waits_for_the_first_answer(tmp_path) -> None:
    """Two stores over one state.sqlite3, as two workers of `serve --workers 2` hold them."""
    conns = [connect_state(tmp_path / "state.sqlite3") for _ in range(2)]
    runs: list[int] = []

    async def place_order(_slot: object = None) -> dict[str, int]:
        runs.append(1)
        await asyncio.sleep(0.3)
        return {"id": len(runs)}

    async def run_here(fn, *args):
        return fn(*args)

    first, second = (IdempotencyStore(conn, run_here) for conn in conns)
    try:
        answers = await asyncio.gather(*(store.run_once("key-a", "call-1", "print", place_order, json.dumps,
                                                        json.loads) for store in (first, second)))
        assert answers == [{"id": 1}, {"id": 1}] and runs == [1]

        async def fails(_slot: object = None) -> dict[str, int]:
            raise RuntimeError("the database refused the write")

        with pytest.raises(RuntimeError):
            await first.run_once("key-a", "call-2", "print", fails, json.dumps, json.loads)
        assert await second.run_once("key-a", "call-2", "print", place_order, json.dumps,
                                     json.loads) == {"id": 2}  # a failed action leaves the key free
        conns[0].execute("INSERT INTO idempotency (key_id, idem_key, fingerprint, status, response, created_at) "
                         "VALUES ('key-a', 'call-3', 'print', 0, '', ?)",
                         ((dt.datetime.now(dt.UTC) - ABANDONED - dt.timedelta(seconds=1)).isoformat(),))
        assert await second.run_once("key-a", "call-3", "print", place_order, json.dumps,
                                     json.loads) == {"id": 3}  # a claim left by a dead worker expires
    finally:
        for conn in conns:
            conn.close()


class BusyState:
    """A store on one state thread, as a Bridge runs it, and a way to keep that thread busy (`hold`)
    until `gate` is set, as another request's slow state call would."""

    def __init__(self, path: Path) -> None:
        self.conn = connect_state(path)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state")
        self.gate = threading.Event()
        self.store = IdempotencyStore(self.conn, self.on_state)

    async def on_state(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    def hold(self) -> None:
        self.thread.submit(self.gate.wait)

    def run(self, idem: str, action: Any) -> asyncio.Future[Any]:
        return asyncio.ensure_future(self.store.run_once("key-a", idem, "print", action, json.dumps, json.loads))

    async def retry_after_cancelled(self, first: asyncio.Future[Any], idem: str, action: Any) -> Any:
        """Once the cancelled first call has ended and the thread is free, the answer to a retry (a retry
        left waiting on a pending claim fails here instead of hanging)."""
        with pytest.raises(asyncio.CancelledError):
            await first
        self.gate.set()
        return await asyncio.wait_for(self.run(idem, action), 3)

    def pending_claims(self) -> int:
        return self.conn.execute("SELECT count(*) FROM idempotency WHERE status = 0").fetchone()[0]


@pytest.fixture
def busy_state(tmp_path: Path) -> Iterator[BusyState]:
    state = BusyState(tmp_path / "state.sqlite3")
    yield state
    state.gate.set()
    state.thread.shutdown(wait=True)
    state.conn.close()


async def test_the_answer_is_saved_even_when_the_deadline_cancels_the_request_meanwhile(busy_state) -> None:
    runs: list[int] = []

    async def place_order(_slot: object = None) -> dict[str, int]:
        runs.append(1)
        busy_state.hold()  # another request's state call holds the thread: the save will queue
        return {"id": 1}

    first = busy_state.run("call-1", place_order)
    while not runs:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the save is queued behind the busy thread
    first.cancel()  # what the request deadline does
    assert await busy_state.retry_after_cancelled(first, "call-1", place_order) == {"id": 1}
    assert runs == [1]
    assert busy_state.pending_claims() == 0


async def test_a_failed_action_frees_the_key_even_when_cancelled_again_while_releasing(busy_state) -> None:
    started = asyncio.Event()
    runs: list[int] = []

    async def hangs(_slot: object = None) -> dict[str, int]:
        started.set()
        await asyncio.sleep(60)
        return {"id": 0}

    async def place_order(_slot: object = None) -> dict[str, int]:
        runs.append(1)
        return {"id": 2}

    first = busy_state.run("call-2", hangs)
    await started.wait()
    busy_state.hold()
    first.cancel()  # the action ends; its release queues behind the busy thread
    await asyncio.sleep(0.1)
    first.cancel()  # and the request is cancelled again while the release waits
    assert await busy_state.retry_after_cancelled(first, "call-2", place_order) == {"id": 2}
    assert runs == [1]
    assert busy_state.pending_claims() == 0


async def test_a_pending_claim_younger_than_any_action_can_run_is_never_taken_over(tmp_path: Path) -> None:
    """With a 10-minute request limit an action may legitimately run for minutes: a claim that young
    still belongs to a running action, so a retry waits (here: until it gives up) instead of running it."""
    conn = connect_state(tmp_path / "state.sqlite3")
    runs: list[int] = []

    async def place_order(_slot: object = None) -> dict[str, int]:
        runs.append(1)
        return {"id": 1}

    async def run_here(fn, *args):
        return fn(*args)

    store = IdempotencyStore(conn, run_here, abandoned_after=dt.timedelta(seconds=660))
    try:
        for age, key in ((ABANDONED + dt.timedelta(minutes=5), "young"), (dt.timedelta(seconds=661), "dead")):
            conn.execute("INSERT INTO idempotency (key_id, idem_key, fingerprint, status, response, created_at) "
                         "VALUES ('key-a', ?, 'print', 0, '', ?)",
                         (key, (dt.datetime.now(dt.UTC) - age).isoformat()))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.run_once("key-a", "young", "print", place_order, json.dumps,
                                                  json.loads), 0.3)
        assert runs == []
        assert await store.run_once("key-a", "dead", "print", place_order, json.dumps,
                                    json.loads) == {"id": 1}
        assert runs == [1]
    finally:
        conn.close()
