"""A thread that interrupts a SQLite statement running on the event loop once it overruns.

A read tried on the event loop is held to its inline budget by the progress handler, which SQLite calls
between instructions; a single instruction that runs long (counting a large table's rows, for one)
never reaches it. `sqlite3.Connection.interrupt()` from another thread stops such an instruction, and
the event loop cannot call it while it is the one running the statement. So this thread does, at most
`step` seconds late (each look takes the GIL from the loop for a moment: every 25 ms, 40 times a second,
costs nothing measurable; every 5 ms cost about 4% of raw lookups). It sleeps on an Event while no
statement is watched for a second, so an idle server pays nothing, and a watched statement costs the
loop two attribute writes.
"""

from __future__ import annotations

import sqlite3
import threading
import time

IDLE_AFTER = 1.0  # seconds without a watched statement before the thread sleeps until the next one


class Watchdog:
    def __init__(self, step: float = 0.025, idle_after: float = IDLE_AFTER) -> None:
        self.step = step
        self.idle_after = idle_after
        self._current: tuple[sqlite3.Connection, float] | None = None
        self._wanted = threading.Event()
        self._awake = False  # the thread looks at _current: no need to wake it (a plain read per watch)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sqlite-watchdog", daemon=True)
        self._thread.start()

    def watch(self, conn: sqlite3.Connection, until: float) -> None:
        """Interrupt `conn` if it is still being watched at monotonic time `until`."""
        self._current = (conn, until)
        if not self._awake:
            self._wanted.set()

    def done(self) -> None:
        self._current = None

    def stop(self) -> None:
        self._stopped = True
        self._wanted.set()
        self._thread.join()

    def _run(self) -> None:
        last_seen = time.monotonic()
        while True:
            self._wanted.wait()
            self._awake = True
            if self._stopped:
                return
            time.sleep(self.step)
            now = time.monotonic()
            current = self._current
            if current is not None:
                last_seen = now
                conn, until = current
                if now >= until:
                    # no-op if no statement runs now; one that began just now fails "interrupted" before
                    # its deadline, which the reader's paths take as "run it again" (server.db.sqlite)
                    conn.interrupt()
            elif now - last_seen > self.idle_after:
                self._awake = False
                self._wanted.clear()
                # watched again, or stopped, between the checks and the clear: that set() must not be lost
                if self._current is not None or self._stopped:
                    self._wanted.set()
