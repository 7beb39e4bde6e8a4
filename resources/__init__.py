"""Bundled resources (demo database SQL, default tool catalog, templates, icons).

`path()` is the one way to reach them. It is plain file-system access next to this module, which works the
same in a source checkout, an installed wheel and a PyInstaller bundle (where this package's `__file__`
lies in the bundle's data folder) on every supported Python; `importlib.resources` hands back a
`MultiplexedPath` in some of those cases, whose `joinpath` takes one part only before Python 3.12.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    """The bundled file or folder at `parts` (relative to resources/)."""
    return ROOT.joinpath(*parts)
