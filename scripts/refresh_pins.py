"""Refresh constraints.txt: resolve the newest allowed versions, prove them green, then write them.

    python3 scripts/refresh_pins.py [--keep-venv]

constraints.txt pins every package that the README's two commands, .ci/run and the installer builds
install (runtime, test and build tools), for every platform at once (uv's universal resolution writes
`; sys_platform == ...` markers), so an install today and one in three months get the same versions.
This script upgrades them: it resolves into a temporary file, installs the README's test command with
those pins into a brand-new venv, installs the installer tools beside them, runs the whole suite, and
replaces constraints.txt only when everything is green. A red run leaves the old pins in place.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "constraints.txt"
UV = "uv>=0.5"  # only the resolver; what it resolves is pinned by its output


def run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    subprocess.run([str(a) for a in args], cwd=cwd, check=True, env=env)


def resolve(work: Path) -> Path:
    """The newest versions pyproject.toml allows, for every platform and Python it supports."""
    tools = work / "resolver"
    venv.create(tools, with_pip=True)
    python = tools / ("Scripts" if os.name == "nt" else "bin") / "python"
    run(python, "-m", "pip", "install", "-q", UV)
    out = work / "constraints.txt"
    run(python, "-m", "uv", "pip", "compile", "pyproject.toml", "--universal", "--upgrade", "--quiet",
        "--extra", "test", "--extra", "installer", "--no-emit-package", "voka-bridge",
        "--custom-compile-command", "python3 scripts/refresh_pins.py", "-o", out)
    return out


def prove(pins: Path, work: Path) -> None:
    """The README's test command with these pins, in a brand-new venv, then the installer tools."""
    fresh = work / "venv"
    venv.create(fresh, with_pip=True)
    bindir = fresh / ("Scripts" if os.name == "nt" else "bin")
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(fresh)}
    run("python", "-m", "pip", "install", "-q", "-c", pins, "-e", ".[test,installer]", env=env)
    run("python", "-m", "pytest", "-q", env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-venv", action="store_true", help="leave the temporary venvs for a look")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voka-pins-"))
    try:
        pins = resolve(work)
        try:
            prove(pins, work)
        except subprocess.CalledProcessError as exc:
            print(f"refresh_pins: the suite is red on the new pins ({exc.cmd[-1]} exited {exc.returncode});"
                  f" constraints.txt is unchanged. The candidate pins: {pins}", file=sys.stderr)
            args.keep_venv = True
            return 1
        shutil.copyfile(pins, PINS)
        print(f"refresh_pins: green; wrote {PINS.relative_to(ROOT)}")
        return 0
    finally:
        if not args.keep_venv:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
