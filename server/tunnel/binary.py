"""cloudflared itself: the owner's own (on PATH), or Cloudflare's release, downloaded once and checked.

The download is one pinned release from Cloudflare's GitHub, verified against the SHA-256 written here
for each platform before it is ever run (for macOS, whose release is a .tgz, the archive and the
executable inside it are both checked). A file that does not match is deleted, never run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from server.tunnel.provider import TunnelProblem

CLOUDFLARED_VERSION = "2026.9.3"
RELEASE_URL = "https://github.com/cloudflare/cloudflared/releases/download/{version}/{asset}"
CHUNK = 256 * 1024

DownloadProgress = Callable[[int, int | None], None]
"""(bytes so far, total bytes or None when the server does not say)."""


@dataclass(frozen=True)
class Asset:
    name: str  # the release's file name
    sha256: str  # of that file, as downloaded
    binary_sha256: str  # of the executable (the file itself, or the one inside a .tgz)

    @property
    def archive(self) -> bool:
        return self.name.endswith(".tgz")


# cloudflared 2026.9.3 (https://github.com/cloudflare/cloudflared/releases/tag/2026.9.3): the release's
# own "SHA256 Checksums" for the executables, and for the macOS archives the digest of the .tgz itself.
ASSETS: dict[tuple[str, str], Asset] = {
    ("linux", "x86_64"): Asset(
        "cloudflared-linux-amd64",
        "77e26d8d900e0b8469f416239d14b5f296525fdf79fee6f511ef55609e3fbac2",
        "77e26d8d900e0b8469f416239d14b5f296525fdf79fee6f511ef55609e3fbac2"),
    ("linux", "arm64"): Asset(
        "cloudflared-linux-arm64",
        "aaeb2d7d0da3614634c7e03ab13487a1522c2e79165ed2929cfe23d5e95b326d",
        "aaeb2d7d0da3614634c7e03ab13487a1522c2e79165ed2929cfe23d5e95b326d"),
    ("darwin", "x86_64"): Asset(
        "cloudflared-darwin-amd64.tgz",
        "d1155d0837487f261183b15c1eab6c4ebcad9dc49b94675f1524c3564cea3977",
        "ab588b3b4db9cdb4476c30a3db2a72635b1d8327d44741fee6799a0f37b0ec07"),
    ("darwin", "arm64"): Asset(
        "cloudflared-darwin-arm64.tgz",
        "587c2cfb1c230fe36c7fa7727da78be459dae028cabe8c001291999350f07095",
        "5472c1a01c84bc31b3021056a73b4e5774ddddefc572124ea8fdf6c340639f32"),
    ("win32", "x86_64"): Asset(
        "cloudflared-windows-amd64.exe",
        "f096265ec2fcbe9bb6e2d64268db167ced3fcbb83d894bdb9e2fcdb26f2ea7e2",
        "f096265ec2fcbe9bb6e2d64268db167ced3fcbb83d894bdb9e2fcdb26f2ea7e2"),
}

INSTALL_HELP = ("Install cloudflared yourself (https://developers.cloudflare.com/cloudflare-one/connections/"
                "connect-networks/downloads/) so that it is on PATH, or choose ngrok.")


def platform_key(system: str = sys.platform, machine: str | None = None) -> tuple[str, str]:
    machine = (machine if machine is not None else platform.machine()).lower()
    machine = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return ("linux" if system.startswith("linux") else system, machine)


def asset_for_platform(system: str = sys.platform, machine: str | None = None) -> Asset:
    key = platform_key(system, machine)
    asset = ASSETS.get(key)
    if asset is None:
        raise TunnelProblem(f"Voka Bridge has no cloudflared download for this computer ({key[0]} "
                            f"{key[1]}). {INSTALL_HELP}", permanent=True)
    return asset


def release_url(asset: Asset, version: str = CLOUDFLARED_VERSION) -> str:
    return RELEASE_URL.format(version=version, asset=asset.name)


def executable_name(system: str = sys.platform) -> str:
    return "cloudflared.exe" if system == "win32" else "cloudflared"


def installed_path(work_dir: Path) -> Path:
    """Where a downloaded cloudflared lives: the data folder's tunnel/bin/."""
    return work_dir / "bin" / executable_name()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def find_or_download(work_dir: Path, *, progress: DownloadProgress | None = None,
                           url: str | None = None, asset: Asset | None = None,
                           search_path: str | None = None) -> Path:
    """cloudflared on PATH; else the copy downloaded earlier, if it still matches its checksum; else a fresh
    download (`url` and `asset` replace the release and its checksums, for tests)."""
    found = shutil.which("cloudflared", path=search_path)
    if found:
        return Path(found)
    asset = asset or asset_for_platform()
    dest = installed_path(work_dir)
    loop = asyncio.get_running_loop()
    if dest.is_file() and await loop.run_in_executor(None, sha256_file, dest) == asset.binary_sha256:
        return dest
    await download(url or release_url(asset), asset, dest, progress)
    return dest


async def download(url: str, asset: Asset, dest: Path, progress: DownloadProgress | None = None) -> None:
    """Fetch `url`, check it against `asset`, and install the executable at `dest` (atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    done, total = 0, None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise TunnelProblem(f"cloudflared could not be downloaded: {url} answered HTTP "
                                    f"{response.status}. {INSTALL_HELP}")
            total = response.content_length
            with part.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        part.unlink(missing_ok=True)
        why = "no answer in time" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
        raise TunnelProblem(f"cloudflared could not be downloaded ({why}); check the internet connection. "
                            f"{INSTALL_HELP}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if total is not None and done != total:
        part.unlink(missing_ok=True)
        raise TunnelProblem(f"The cloudflared download broke off after {done} of {total} bytes; "
                            "it will be tried again.")
    if digest.hexdigest() != asset.sha256:
        part.unlink(missing_ok=True)
        raise TunnelProblem(_MISMATCH, permanent=True)
    try:
        if asset.archive:
            await asyncio.get_running_loop().run_in_executor(None, _unpack, part, asset)
        part.chmod(0o755)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


_MISMATCH = ("The downloaded cloudflared does not match the checksum Voka Bridge expects, so it was deleted "
             f"and not run. {INSTALL_HELP}")


def _unpack(part: Path, asset: Asset) -> None:
    """Replace the downloaded .tgz at `part` by the `cloudflared` executable inside it, checked."""
    with tarfile.open(part, "r:gz") as archive:
        member = next((m for m in archive.getmembers()
                       if m.isfile() and Path(m.name).name == "cloudflared"), None)
        handle = archive.extractfile(member) if member is not None else None
        data = handle.read() if handle is not None else b""
    if hashlib.sha256(data).hexdigest() != asset.binary_sha256:
        raise TunnelProblem(_MISMATCH, permanent=True)
    part.write_bytes(data)
