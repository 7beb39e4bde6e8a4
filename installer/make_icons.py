"""Render the app icon's SVG into the platform icon files the installers need.

    python installer/make_icons.py OUTDIR      -> OUTDIR/voka-bridge.ico, OUTDIR/voka-bridge.icns, .png

The SVG in resources/icons is the one drawing; Qt's SVG renderer draws it at each size (sharp, not a
scaled bitmap) and Pillow writes the Windows .ico and macOS .icns containers. Runs on any OS, so the
files a Windows or macOS build needs are made, and checked by the tests, on Linux too.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "voka-bridge.svg"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def render(size: int, svg: Path = SVG) -> bytes:
    """The SVG drawn at size x size pixels, as PNG bytes."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])  # painting needs one
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


def make_icons(out: Path) -> dict[str, Path]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    images = {size: Image.open(io.BytesIO(render(size))) for size in sorted({*ICO_SIZES, *ICNS_SIZES})}
    files = {"png": out / "voka-bridge.png", "ico": out / "voka-bridge.ico", "icns": out / "voka-bridge.icns"}
    images[256].save(files["png"])
    images[256].save(files["ico"], sizes=[(s, s) for s in ICO_SIZES],
                     append_images=[images[s] for s in ICO_SIZES if s != 256])
    images[1024].save(files["icns"], append_images=[images[s] for s in ICNS_SIZES if s != 1024])
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for kind, path in make_icons(Path(sys.argv[1])).items():
        print(f"{kind}: {path}")
