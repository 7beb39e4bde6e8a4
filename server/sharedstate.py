"""Small fixed-size tables for limiter state: a dict in one process, or shared memory across workers.

With `serve --workers N` a key's rate limit and an address's failed-auth count must hold for the whole
server, whichever worker a connection reaches. The limiters (server/ratelimit.py) keep one implementation
and store their few numbers per key in a table: `MemoryTable` (one process, the default) or `SharedTable`
(rows in `multiprocessing.shared_memory`, one `multiprocessing` lock). A shared table has a fixed number
of slots addressed by a hash of the key; when every slot of a key's probe window is taken, the one idle
longest is reused, so a spray of addresses cannot grow memory (it can only make old rows forgotten).

Reads take no lock: every request reads the failed-auth table twice, and with two busy workers those
lock round trips (and the waits when both wanted it at once) were a measurable share of each request. A
writer, always under the lock, makes a table's sequence number odd while it writes and even again after;
a reader that saw the same even number before and after its read saw no write (a seqlock), else it
reads again under the lock.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = tuple[float, float, float, float]
Change = Callable[[Row | None], tuple[Row | None, T]]

WIDTH = 4  # numbers per row
PROBE = 8  # slots a key may live in (its home slot and the next ones)
SLOTS = 16_384  # per shared table
_MAX_MEMORY_ROWS = 10_000
_HASHES = struct.Struct(f"<{PROBE}Q")
_HASH = struct.Struct("<Q")
_RECORD = struct.Struct(f"<{1 + WIDTH}d")  # last touched, then the row
_COUNTER = struct.Struct("<q")
_HOLDER = struct.Struct("<q")  # the pid inside the shared lock, 0 when none; in the header after the counter
_SEQUENCE = struct.Struct("<Q")  # a table's write sequence (odd while a write runs), before its hashes
_OPTIMISTIC_READS = 3


class Table(Protocol):
    def update(self, key: str, change: Change[T]) -> T:
        """Read the key's row (None if absent), store what `change` returns (None deletes), atomically."""
        ...

    def get(self, key: str) -> Row | None: ...


class MemoryTable:
    """One process's rows in a dict. Past `max_rows`, rows untouched for `keep_seconds` are dropped."""

    def __init__(self, keep_seconds: float, max_rows: int = _MAX_MEMORY_ROWS) -> None:
        self.keep_seconds = keep_seconds
        self.max_rows = max_rows
        self._rows: dict[str, tuple[float, Row]] = {}  # key -> (last touched, row)

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> Row | None:
        found = self._rows.get(key)
        return found[1] if found else None

    def update(self, key: str, change: Change[T]) -> T:
        found = self._rows.get(key)
        row, answer = change(found[1] if found else None)
        if row is None:
            self._rows.pop(key, None)
            return answer
        now = time.monotonic()
        if found is None and len(self._rows) >= self.max_rows:
            self._rows = {k: v for k, v in self._rows.items() if now - v[0] < self.keep_seconds}
        self._rows[key] = (now, row)
        return answer


@functools.lru_cache(maxsize=4096)  # asked on every request, mostly for the same few keys
def key_hash(key: str) -> int:
    """Stable across processes (unlike hash()); 0 marks an empty slot, so it is never a key's hash."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1


class SharedTable:
    """Rows in a shared-memory buffer: the write sequence, `slots + PROBE` hashes, then as many
    (touched, row) records."""

    def __init__(self, buffer: memoryview, lock: Any, slots: int = SLOTS) -> None:
        self._buf = buffer
        self._lock = lock
        self.slots = slots
        self._hashes = _SEQUENCE.size
        self._records = self._hashes + (slots + PROBE) * _HASH.size

    @staticmethod
    def size(slots: int = SLOTS) -> int:
        return _SEQUENCE.size + (slots + PROBE) * (_HASH.size + _RECORD.size)

    def _find(self, wanted: int) -> tuple[int, bool]:
        """(slot, whether it holds the key): the key's slot, else a free one, else the idle-longest one."""
        home = wanted % self.slots
        hashes = _HASHES.unpack_from(self._buf, self._hashes + home * _HASH.size)
        if wanted in hashes:
            return home + hashes.index(wanted), True
        if 0 in hashes:
            return home + hashes.index(0), False
        touched = [_RECORD.unpack_from(self._buf, self._records + (home + i) * _RECORD.size)[0]
                   for i in range(PROBE)]
        return home + touched.index(min(touched)), False

    def _read(self, slot: int) -> Row:
        return _RECORD.unpack_from(self._buf, self._records + slot * _RECORD.size)[1:]  # type: ignore[return-value]

    def _lookup(self, wanted: int) -> Row | None:
        slot, held = self._find(wanted)
        return self._read(slot) if held else None

    def get(self, key: str) -> Row | None:
        """The key's row, read without the lock unless a write runs across the read."""
        wanted = key_hash(key)
        buf = self._buf
        for _ in range(_OPTIMISTIC_READS):
            before = _SEQUENCE.unpack_from(buf)[0]
            if before & 1:
                continue
            row = self._lookup(wanted)
            if _SEQUENCE.unpack_from(buf)[0] == before:
                return row
        with self._lock:
            return self._lookup(wanted)

    def update(self, key: str, change: Change[T]) -> T:
        wanted = key_hash(key)
        with self._lock:
            slot, held = self._find(wanted)
            row, answer = change(self._read(slot) if held else None)
            if row is None and not held:
                return answer
            # odd while writing; `| 1` also mends the parity a worker that died mid-write left behind
            sequence = (_SEQUENCE.unpack_from(self._buf)[0] + 1) | 1
            _SEQUENCE.pack_into(self._buf, 0, sequence)
            if row is None:
                _HASH.pack_into(self._buf, self._hashes + slot * _HASH.size, 0)
            else:
                _HASH.pack_into(self._buf, self._hashes + slot * _HASH.size, wanted)
                _RECORD.pack_into(self._buf, self._records + slot * _RECORD.size, time.monotonic(), *row)
            _SEQUENCE.pack_into(self._buf, 0, sequence + 1)
            return answer


class Generation:
    """A counter every worker can read and bump (the query cache's "something was written")."""

    def __init__(self, buffer: memoryview | None = None, lock: Any = None) -> None:
        self._buf = buffer
        self._lock = lock
        self._local = 0

    def value(self) -> int:
        if self._buf is None:
            return self._local
        return int(_COUNTER.unpack_from(self._buf, 0)[0])

    def bump(self) -> None:
        if self._buf is None:
            self._local += 1
            return
        with self._lock:
            _COUNTER.pack_into(self._buf, 0, self.value() + 1)


class HeldLock:
    """The shared lock, with the pid of the process inside it written in the segment (after acquiring,
    cleared before releasing), so the supervisor can tell a lock left held by a worker that died from
    one a live worker holds."""

    def __init__(self, lock: Any, view: memoryview) -> None:
        self.lock = lock
        self._view = view
        self._pid = os.getpid()

    def __enter__(self) -> None:
        self.lock.acquire()
        _HOLDER.pack_into(self._view, 0, self._pid)

    def __exit__(self, *exc: object) -> None:
        _HOLDER.pack_into(self._view, 0, 0)
        self.lock.release()

    def holder(self) -> int:
        return int(_HOLDER.unpack_from(self._view, 0)[0])

    def release_if_held_by(self, pid: int) -> bool:
        """Release the lock if `pid` (a process that has died) was inside it; whether it was."""
        if pid <= 0 or self.holder() != pid:
            return False
        _HOLDER.pack_into(self._view, 0, 0)
        self.lock.release()
        return True


class SharedState:
    """The shared-memory segment of one multi-process server: the limiters' tables and the generation.

    The supervisor creates it and hands it to each worker as a Process argument (the segment by name,
    the lock as multiprocessing passes locks to spawned children); it unlinks the segment at the end.
    """

    TABLES = ("rate", "auth")

    def __init__(self, slots: int = SLOTS, *, _name: str | None = None, _lock: Any = None) -> None:
        self.slots = slots
        size = _COUNTER.size * 8 + len(self.TABLES) * SharedTable.size(slots)
        self._owner = _name is None
        self.memory = SharedMemory(name=_name, create=self._owner, size=size)
        if self._owner:
            self.memory.buf[:size] = bytes(size)
        self.lock = _lock if _lock is not None else get_context("spawn").Lock()
        self._views = [self.memory.buf[:_COUNTER.size],
                       self.memory.buf[_COUNTER.size:_COUNTER.size + _HOLDER.size]]
        self.guard = HeldLock(self.lock, self._views[1])
        self.generation = Generation(self._views[0], self.guard)
        start = _COUNTER.size * 8
        self.tables: dict[str, SharedTable] = {}
        for name in self.TABLES:
            end = start + SharedTable.size(slots)
            self._views.append(self.memory.buf[start:end])
            self.tables[name] = SharedTable(self._views[-1], self.guard, slots)
            start = end

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach, (self.memory.name, self.slots, self.lock))

    def close(self) -> None:
        """Let go of the views and the mapping (the owner also removes the segment); idempotent."""
        if not self._views:
            return
        self.generation = Generation()
        self.tables = {}
        for view in self._views:
            view.release()
        self._views = []
        self.memory.close()
        if self._owner:
            self.memory.unlink()


def _attach(name: str, slots: int, lock: Any) -> SharedState:
    return SharedState(slots, _name=name, _lock=lock)


@dataclass
class Cluster:
    """This process's place in a multi-process server (`serve --workers N`): the shared segment, which
    worker it is (0 is the one that also runs once-per-server chores) and how many there are."""

    shared: SharedState
    index: int
    workers: int
