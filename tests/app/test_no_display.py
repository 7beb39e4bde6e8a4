"""`voka-bridge` where no window can open: one clear line pointing to `serve`, and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_no_display_says_so_and_points_to_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "app.main", "gui", "--home", str(tmp_path / "h")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no display" in result.stderr and "voka-bridge serve" in result.stderr
    assert "Traceback" not in result.stderr and "qt.qpa" not in result.stderr
    assert not (tmp_path / "h").exists()  # nothing was started or written
