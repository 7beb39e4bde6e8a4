"""Finding cloudflared, and downloading it on first use: against a local server that plays GitHub's
release download (a redirect, then the file), since the real one cannot be reached from here."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest
from aiohttp import web

from server.tunnel import binary
from server.tunnel.binary import ASSETS, Asset, find_or_download, installed_path
from server.tunnel.provider import TunnelProblem
from tests.server.tunnel.relay import serve

PROGRAM = b"#!/bin/sh\necho 'fake cloudflared 2026.9.3'\n" + b"\0" * (700 * 1024)  # a few chunks' worth


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tgz(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Release:
    """GitHub's release download: /releases/download/V/NAME redirects to a storage host with the file."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.hits: list[str] = []
        self.url = ""

    async def start(self) -> None:
        app = web.Application()

        async def download(request: web.Request) -> web.StreamResponse:
            self.hits.append(request.path)
            raise web.HTTPFound(f"/storage/{request.match_info['name']}")

        async def storage(request: web.Request) -> web.Response:
            data = self.files.get(request.match_info["name"])
            if data is None:
                raise web.HTTPNotFound()
            return web.Response(body=data, content_type="application/octet-stream")

        app.router.add_get("/cloudflare/cloudflared/releases/download/{version}/{name}", download)
        app.router.add_get("/storage/{name}", storage)
        self.runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}/cloudflare/cloudflared/releases/download/2026.9.3/"

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def release():
    server = Release({"cloudflared-linux-amd64": PROGRAM,
                      "cloudflared-darwin-arm64.tgz": tgz("cloudflared", PROGRAM),
                      "cloudflared-darwin-amd64.tgz": tgz("cloudflared", b"something else")})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


async def test_first_use_downloads_checks_and_installs_with_progress(release, tmp_path, empty_path):
    asset = Asset("cloudflared-linux-amd64", sha(PROGRAM), sha(PROGRAM))
    seen: list[tuple[int, int | None]] = []
    path = await find_or_download(tmp_path / "tunnel", url=release.url + asset.name, asset=asset,
                                  progress=lambda done, total: seen.append((done, total)))
    assert path == installed_path(tmp_path / "tunnel") and path.read_bytes() == PROGRAM
    if sys.platform != "win32":
        assert os.access(path, os.X_OK)
    assert len(seen) > 1 and seen[-1] == (len(PROGRAM), len(PROGRAM))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert not list(path.parent.glob("*.part"))
    # the second time the checked copy is used, nothing is downloaded
    again = await find_or_download(tmp_path / "tunnel", url=release.url + asset.name, asset=asset)
    assert again == path and release.hits == ["/cloudflare/cloudflared/releases/download/2026.9.3/" + asset.name]


async def test_a_download_that_does_not_match_its_checksum_is_deleted_and_never_run(release, tmp_path, empty_path):
    asset = Asset("cloudflared-linux-amd64", sha(b"what the release really holds"), sha(b"x"))
    with pytest.raises(TunnelProblem) as caught:
        await find_or_download(tmp_path / "tunnel", url=release.url + asset.name, asset=asset)
    assert caught.value.permanent and "does not match the checksum" in caught.value.message
    assert not any((tmp_path / "tunnel" / "bin").iterdir())


async def test_a_changed_installed_copy_is_replaced(release, tmp_path, empty_path):
    asset = Asset("cloudflared-linux-amd64", sha(PROGRAM), sha(PROGRAM))
    path = installed_path(tmp_path / "tunnel")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"tampered with")
    assert await find_or_download(tmp_path / "tunnel", url=release.url + asset.name, asset=asset) == path
    assert path.read_bytes() == PROGRAM and len(release.hits) == 1


async def test_macos_archives_are_checked_outside_and_inside(release, tmp_path, empty_path):
    good = release.files["cloudflared-darwin-arm64.tgz"]
    asset = Asset("cloudflared-darwin-arm64.tgz", sha(good), sha(PROGRAM))
    path = await find_or_download(tmp_path / "a", url=release.url + asset.name, asset=asset)
    assert path.read_bytes() == PROGRAM
    other = release.files["cloudflared-darwin-amd64.tgz"]  # the archive is as published, its content is not
    asset = Asset("cloudflared-darwin-amd64.tgz", sha(other), sha(PROGRAM))
    with pytest.raises(TunnelProblem) as caught:
        await find_or_download(tmp_path / "b", url=release.url + asset.name, asset=asset)
    assert caught.value.permanent and not installed_path(tmp_path / "b").exists()


async def test_an_unreachable_release_is_worth_retrying_and_says_what_else_to_do(release, tmp_path, empty_path):
    asset = Asset("cloudflared-linux-arm64", sha(PROGRAM), sha(PROGRAM))
    with pytest.raises(TunnelProblem) as missing:
        await find_or_download(tmp_path / "t", url=release.url + asset.name, asset=asset)
    assert not missing.value.permanent and "HTTP 404" in missing.value.message
    assert "Install cloudflared yourself" in missing.value.message
    with pytest.raises(TunnelProblem) as offline:
        await find_or_download(tmp_path / "t", url="http://127.0.0.1:9/nothing", asset=asset)
    assert not offline.value.permanent and "check the internet connection" in offline.value.message


async def test_cloudflared_on_path_wins(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    own = bin_dir / binary.executable_name()
    own.write_text("#!/bin/sh\n")
    own.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    found = await find_or_download(tmp_path / "tunnel", url="http://127.0.0.1:9/never-asked")
    assert found == own


def test_every_supported_platform_has_a_pinned_release_file():
    for key in [("linux", "x86_64"), ("linux", "arm64"), ("darwin", "x86_64"), ("darwin", "arm64"),
                ("win32", "x86_64")]:
        asset = ASSETS[key]
        assert len(asset.sha256) == 64 and len(asset.binary_sha256) == 64
        assert asset.archive == (key[0] == "darwin")
        assert binary.release_url(asset).startswith(
            "https://github.com/cloudflare/cloudflared/releases/download/2026.9.3/cloudflared-")
    assert binary.platform_key("linux", "AMD64") == ("linux", "x86_64")
    assert binary.platform_key("darwin", "arm64") == ("darwin", "arm64")
    assert binary.asset_for_platform("win32", "AMD64").name == "cloudflared-windows-amd64.exe"
    with pytest.raises(TunnelProblem) as caught:
        binary.asset_for_platform("freebsd14", "riscv64")
    assert caught.value.permanent and "Install cloudflared yourself" in caught.value.message
