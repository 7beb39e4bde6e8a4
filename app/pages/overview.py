"""Overview: state, address, uptime, today's traffic, error rate, latency, and live charts."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QFormLayout, QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from app.controller import AppController
from app.icons import STATE_COLOURS
from app.widgets.chart import LineChart

REFRESH_MS = 1000
CHART_SECONDS = 180
CHART_STEP = 3


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


class OverviewPage(QWidget):
    title = "Overview"
    icon_name = "overview"

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        layout = QVBoxLayout(self)
        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.RichText)
        self.reason_label = QLabel()
        self.reason_label.setWordWrap(True)
        layout.addWidget(self.state_label)
        layout.addWidget(self.reason_label)

        facts = QGroupBox("Right now")
        form = QGridLayout(facts)
        self.url_value = QLabel()
        self.url_value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.uptime_value = QLabel()
        self.today_value = QLabel()
        self.error_value = QLabel()
        self.latency_value = QLabel()
        self.database_value = QLabel()
        self.database_value.setWordWrap(True)
        self.error_value.setToolTip("Share of requests in the last 5 minutes that failed on this side "
                                    "(5xx)")
        self.latency_value.setToolTip("Half of the answers (p50) and 95% of them (p95) took at most "
                                      "this long, over the last 5 minutes")
        rows = [("Address for Voka", self.url_value), ("Uptime", self.uptime_value),
                ("Requests today", self.today_value), ("Error rate (5 min)", self.error_value),
                ("Latency p50 / p95", self.latency_value), ("Database", self.database_value)]
        for i, (name, widget) in enumerate(rows):
            sub = QFormLayout()
            sub.addRow(f"<b>{name}</b>", widget)
            form.addLayout(sub, i // 2, i % 2)
        layout.addWidget(facts)

        charts = QGroupBox("Live")
        chart_layout = QVBoxLayout(charts)
        self.rate_chart = LineChart("Requests per second", "req/s", "#2a5bd7")
        self.latency_chart = LineChart("Latency (p95)", "ms", "#c2410c")
        chart_layout.addWidget(self.rate_chart)
        chart_layout.addWidget(self.latency_chart)
        layout.addWidget(charts, 1)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        controller.statusChanged.connect(self.refresh)
        self.refresh()

    def stop(self) -> None:
        """The app is quitting: no more refreshes."""
        self._timer.stop()

    @Slot()
    def refresh(self, *_args: object) -> None:
        if not self.isVisible() and self.today_value.text():
            return  # nobody is looking: skip the chart maths (the first fill always runs)
        controller = self.controller
        status = controller.status
        colour = STATE_COLOURS.get(status.state, "#888")
        self.state_label.setText(f"<span style='font-size:18pt; color:{colour}'>●</span> "
                                 f"<span style='font-size:16pt'><b>{status.label}</b></span>")
        self.reason_label.setText(status.reason)
        self.url_value.setText(controller.voka_url if controller.serving else "—")
        started = controller.started_at
        self.uptime_value.setText(_duration(time.time() - started) if started else "—")
        snap = controller.stats.snapshot()
        self.today_value.setText(f"{snap.requests_today:,}")
        self.error_value.setText(f"{snap.error_rate * 100:.1f} %" if snap.recent_requests else "no requests")
        if snap.p50_ms is None:
            self.latency_value.setText("—")
        else:
            self.latency_value.setText(f"{snap.p50_ms:.1f} ms / {snap.p95_ms:.1f} ms")
        health = controller.server.bridge.health
        self.database_value.setText(("reachable" if health.healthy else f"unreachable ({health.detail})")
                                    if controller.serving else "—")
        rates, latency = controller.stats.series(CHART_SECONDS, CHART_STEP)
        span = f"last {CHART_SECONDS // 60} min"
        self.rate_chart.set_values(rates, span)
        self.latency_chart.set_values(latency, span)
