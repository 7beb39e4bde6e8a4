"""The screenshot script drives the real app through every page and writes real pictures."""

from __future__ import annotations

from PySide6.QtGui import QImage

from app.screenshots import PAGES, take


def test_screenshot_script_saves_every_page(tmp_path, qtbot):
    saved = take(tmp_path / "shots", traffic_seconds=1.5, pause=0.1)
    names = {path.name for path in saved}
    assert names == {f"{slug}.png" for _, slug in PAGES} | {"wizard-database.png", "wizard-reach.png"}
    for path in saved:
        image = QImage(str(path))
        assert image.width() >= 600 and image.height() >= 400, path
        colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 37)}
        assert len(colours) > 4, f"{path.name} looks blank"
