"""A small line chart drawn with QPainter (QtCharts is not part of PySide6-Essentials).

One main line, shaded, and optional further lines on the same scale (e.g. refused requests beside all
requests), each named in the header in its own colour so the chart reads without a legend box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


@dataclass
class Line:
    label: str
    colour: QColor
    values: list[float] = field(default_factory=list)

    @property
    def latest(self) -> float:
        return self.values[-1] if self.values else 0.0

    @property
    def peak(self) -> float:
        return max(self.values, default=0.0)


class LineChart(QWidget):
    def __init__(self, title: str, unit: str, colour: str = "#2a5bd7", parent: QWidget | None = None, *,
                 label: str = "") -> None:
        """`label` names the main line in the header once another line is added."""
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.lines = [Line(label, QColor(colour))]
        self.span_label = ""
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName(title)

    def sizeHint(self) -> QSize:
        return QSize(360, 160)

    def add_line(self, label: str, colour: str) -> Line:
        """Another line on the same scale; `set_values` fills it after the main line's values."""
        line = Line(label, QColor(colour))
        self.lines.append(line)
        return line

    @property
    def values(self) -> list[float]:
        return self.lines[0].values

    def set_values(self, values: Sequence[float], span_label: str = "", *others: Sequence[float]) -> None:
        """The main line's values, then one sequence per added line, in the order they were added."""
        self.lines[0].values = list(values)
        for line, more in zip(self.lines[1:], others, strict=False):
            line.values = list(more)
        self.span_label = span_label
        self.setToolTip("; ".join(f"{line.label or self.title}: now {line.latest:.1f} {self.unit}, "
                                  f"peak {line.peak:.1f} {self.unit}" for line in self.lines))
        self.update()

    @property
    def peak(self) -> float:
        return max(line.peak for line in self.lines)

    def _header(self, painter: QPainter, width: float, height: float, text: QColor) -> None:
        """Title, then each line's latest value in that line's colour."""
        x = 0.0
        metrics = painter.fontMetrics()
        parts = [(f"{self.title}  ·  ", text)]
        if len(self.lines) == 1:
            parts.append((f"{self.lines[0].latest:.1f} {self.unit}", text))
        else:
            for i, line in enumerate(self.lines):
                sep = "  ·  " if i else ""
                parts.append((f"{sep}{line.label} {line.latest:.1f}", line.colour if i else text))
            parts.append((f" {self.unit}", text))
        for chunk, colour in parts:
            painter.setPen(colour)
            painter.drawText(QRectF(x, 0, width - x, height), Qt.AlignmentFlag.AlignLeft, chunk)
            x += metrics.horizontalAdvance(chunk)
        painter.setPen(text)
        painter.drawText(QRectF(0, 0, width, height), Qt.AlignmentFlag.AlignRight, self.span_label)

    def paintEvent(self, _event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.WindowText)
        faint = QColor(text)
        faint.setAlpha(50)
        metrics = painter.fontMetrics()
        header = metrics.height() + 6
        self._header(painter, self.width(), header, text)
        area = QRectF(metrics.horizontalAdvance("0000") + 6, header, 0, 0)
        area.setRight(self.width() - 4)
        area.setBottom(self.height() - 4)
        top = self._nice_max(self.peak)
        painter.setPen(QPen(faint, 1))
        for i in range(3):
            y = area.top() + area.height() * i / 2
            painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
            label = self._fmt(top * (2 - i) / 2)
            painter.drawText(QRectF(0, y - metrics.height() / 2, area.left() - 4, metrics.height()),
                             Qt.AlignmentFlag.AlignRight, label)
        for i, line in enumerate(self.lines):
            self._draw(painter, area, top, line, shaded=i == 0)

    @staticmethod
    def _draw(painter: QPainter, area: QRectF, top: float, line: Line, *, shaded: bool) -> None:
        if len(line.values) < 2:
            return
        step = area.width() / (len(line.values) - 1)
        path = QPainterPath()
        for i, value in enumerate(line.values):
            point = QPointF(area.left() + i * step, area.bottom() - area.height() * (value / top))
            if i == 0:
                path.moveTo(point)
            else:
                path.lineTo(point)
        if shaded:
            fill = QPainterPath(path)
            fill.lineTo(area.right(), area.bottom())
            fill.lineTo(area.left(), area.bottom())
            shade = QColor(line.colour)
            shade.setAlpha(45)
            painter.fillPath(fill, shade)
        painter.setPen(QPen(line.colour, 2))
        painter.drawPath(path)

    @staticmethod
    def _nice_max(peak: float) -> float:
        if peak <= 0:
            return 1.0
        magnitude = 10 ** len(str(int(peak)))
        for step in (0.1, 0.2, 0.25, 0.5, 1.0):
            if peak <= magnitude * step:
                return magnitude * step
        return float(magnitude)

    @staticmethod
    def _fmt(value: float) -> str:
        return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"
