"""A small line chart drawn with QPainter (QtCharts is not part of PySide6-Essentials)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class LineChart(QWidget):
    def __init__(self, title: str, unit: str, colour: str = "#2a5bd7", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.colour = QColor(colour)
        self.values: list[float] = []
        self.span_label = ""
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName(title)

    def sizeHint(self) -> QSize:
        return QSize(360, 160)

    def set_values(self, values: Sequence[float], span_label: str = "") -> None:
        self.values = list(values)
        self.span_label = span_label
        latest = self.values[-1] if self.values else 0.0
        self.setToolTip(f"{self.title}: now {latest:.1f} {self.unit}, peak {self.peak:.1f} {self.unit}")
        self.update()

    @property
    def peak(self) -> float:
        return max(self.values, default=0.0)

    def paintEvent(self, _event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.WindowText)
        faint = QColor(text)
        faint.setAlpha(50)
        metrics = painter.fontMetrics()
        header = metrics.height() + 6
        painter.setPen(text)
        latest = self.values[-1] if self.values else 0.0
        painter.drawText(QRectF(0, 0, self.width(), header), Qt.AlignmentFlag.AlignLeft,
                         f"{self.title}  ·  {latest:.1f} {self.unit}")
        painter.drawText(QRectF(0, 0, self.width(), header), Qt.AlignmentFlag.AlignRight, self.span_label)
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
        if len(self.values) < 2:
            return
        step = area.width() / (len(self.values) - 1)
        path = QPainterPath()
        for i, value in enumerate(self.values):
            point = QPointF(area.left() + i * step, area.bottom() - area.height() * (value / top))
            if i == 0:
                path.moveTo(point)
            else:
                path.lineTo(point)
        fill = QPainterPath(path)
        fill.lineTo(area.right(), area.bottom())
        fill.lineTo(area.left(), area.bottom())
        shade = QColor(self.colour)
        shade.setAlpha(45)
        painter.fillPath(fill, shade)
        painter.setPen(QPen(self.colour, 2))
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
