"""Which process owns half-done work: a lock held for the process's life, gone the moment it dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from server.liveness import ProcessLease

HOLDER = """
import sys, time
from pathlib import Path
from server.liveness import ProcessLease
lease = ProcessLease(Path(sys.argv[1]))
print(lease.id, flush=True)
time.sleep(60)
"""


def test_a_killed_process_is_dead_at_once_and_a_running_one_alive(tmp_path: Path) -> None:
    mine = ProcessLease(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        other = holder.stdout.readline().strip()
        assert mine.alive(mine.id) and mine.alive(other) and mine.alive(None)
        assert mine.dead_owners() == []
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait(10)
        assert not mine.alive(other)  # no timeout: the kernel let go of its lock
        assert mine.dead_owners() == [other]
        mine.forget(other)
        assert not (tmp_path / "instances" / f"{other}.lock").exists()
        assert not mine.alive("0123abcd") and not mine.alive("../../etc/passwd")
    finally:
        holder.kill()
        mine.close()
    assert list((tmp_path / "instances").iterdir()) == []


def test_two_leases_in_one_process_see_each_other_alive(tmp_path: Path) -> None:
    """The desktop app restarts its server in the same process: the old lease and the new are distinct."""
    first, second = ProcessLease(tmp_path), ProcessLease(tmp_path)
    try:
        assert first.alive(second.id) and second.alive(first.id)
        first.close()
        assert not second.alive(first.id)
    finally:
        second.close()
