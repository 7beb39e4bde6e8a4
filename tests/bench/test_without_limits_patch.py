"""bench/without_limits.patch, the README's measure of what the limits cost, still applies to this tree
and still takes out what it says (a patch that no longer applies would leave the README's figures
unreproducible; one that applies but misses a limit would make them look cheaper than they are)."""

from __future__ import annotations

import py_compile
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "bench" / "without_limits.patch"
# what the running server does for the limits on every lookup, and the patch must take out
LIMIT_CALLS = {
    "server/db/sqlite.py": ["reader.limit_for_loop()", "watchdog.watch(", "watchdog.done()"],
    "server/executor.py": ["self._bound_answer(ctx, outcome)", "call_owner.set(",
                           "max_bytes=limits.max_response_bytes"],
}


def test_the_patch_applies_and_takes_the_limits_out_of_the_lookup_path(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "server", tmp_path / "server")
    for name, calls in LIMIT_CALLS.items():
        text = (tmp_path / name).read_text()
        assert all(call in text for call in calls), f"{name} no longer has one of {calls}"

    applied = subprocess.run(["git", "apply", str(PATCH)], cwd=tmp_path, capture_output=True, text=True)

    assert applied.returncode == 0, applied.stderr
    for name, calls in LIMIT_CALLS.items():
        text = (tmp_path / name).read_text()
        assert not [call for call in calls if call in text], name
        py_compile.compile(str(tmp_path / name), doraise=True)
