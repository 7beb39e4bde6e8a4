"""Overview: state, address, uptime, today's traffic, failed and refused calls, latency, live charts, and a
notice that says who is being turned away, why, with a button to the fix (server.stats.explain)."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.controller import AppController
from app.icons import STATE_COLOURS
from app.pages.keys import KeysPage
from app.pages.settings import SettingsPage
from app.widgets.chart import LineChart
from app.window import MainWindow
from server.stats import FIX_ADDRESS, FIX_KEYS, FIX_RATE_LIMIT, Explanation, Snapshot, explain

REFRESH_MS = 1000
CHART_SECONDS = 180
CHART_STEP = 3
REFUSED_COLOUR, FAILED_COLOUR = "#b7791f", "#d33a2c"


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


def _share(part: int, total: int) -> str:
    return f"{part:,} of {total:,} ({part / total * 100:.1f} %)" if total else "no requests"


class OverviewPage(QWidget):
    title = "Overview"
    icon_name = "overview"

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.explanation: Explanation | None = None
        layout = QVBoxLayout(self)
        self.state_label = QLabel()
        self.state_label.setTextFormat(Qt.TextFormat.RichText)
        self.reason_label = QLabel()
        self.reason_label.setWordWrap(True)
        layout.addWidget(self.state_label)
        layout.addWidget(self.reason_label)
        layout.addWidget(self._refusal_notice())

        facts = QGroupBox("Right now")
        form = QGridLayout(facts)
        self.url_value = QLabel()
        self.url_value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.uptime_value = QLabel()
        self.today_value = QLabel()
        self.failed_value = QLabel()
        self.refused_value = QLabel()
        self.latency_value = QLabel()
        self.database_value = QLabel()
        self.database_value.setWordWrap(True)
        self.failed_value.setToolTip("Requests in the last 5 minutes that failed on this side (5xx): "
                                     "a problem of this PC or its database")
        self.refused_value.setToolTip("Requests in the last 5 minutes that were turned away: a wrong or "
                                      "missing key (401), not allowed (403), or over the limit (429). The "
                                      "server is fine, but the caller got no answer")
        self.latency_value.setToolTip("Half of the answers (p50) and 95% of them (p95) took at most "
                                      "this long, over the last 5 minutes")
        rows = [("Address for Voka", self.url_value), ("Uptime", self.uptime_value),
                ("Requests today", self.today_value), ("Latency p50 / p95", self.latency_value),
                ("Failed (5 min)", self.failed_value), ("Refused (5 min)", self.refused_value),
                ("Database", self.database_value)]
        for i, (name, widget) in enumerate(rows):
            sub = QFormLayout()
            sub.addRow(f"<b>{name}</b>", widget)
            form.addLayout(sub, i // 2, i % 2)
        layout.addWidget(facts)

        charts = QGroupBox("Live")
        chart_layout = QVBoxLayout(charts)
        self.rate_chart = LineChart("Requests per second", "req/s", "#2a5bd7", label="all")
        self.refused_line = self.rate_chart.add_line("refused", REFUSED_COLOUR)
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

    def _refusal_notice(self) -> QFrame:
        """Who is being turned away and why, in plain words, with the fix one click away."""
        self.notice = QFrame()
        self.notice.setObjectName("refusalNotice")
        self.notice.setStyleSheet(f"#refusalNotice {{ border: 1px solid {REFUSED_COLOUR}; "
                                  f"border-left: 5px solid {REFUSED_COLOUR}; border-radius: 3px; }}")
        self.notice_title = QLabel()
        self.notice_title.setWordWrap(True)
        self.notice_text = QLabel()
        self.notice_text.setWordWrap(True)
        self.notice_others = QLabel()
        self.notice_others.setWordWrap(True)
        self.fix_button = QPushButton()
        self.fix_button.clicked.connect(self.open_fix)
        text = QVBoxLayout()
        for label in (self.notice_title, self.notice_text, self.notice_others):
            text.addWidget(label)
        row = QHBoxLayout(self.notice)
        row.addLayout(text, 1)
        row.addWidget(self.fix_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.notice.setVisible(False)
        return self.notice

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
        self._show_count(self.failed_value, snap.recent_errors, snap.recent_requests, FAILED_COLOUR)
        self._show_count(self.refused_value, snap.recent_refused, snap.recent_requests, REFUSED_COLOUR)
        self._show_refusals(snap)
        if snap.p50_ms is None:
            self.latency_value.setText("—")
        else:
            self.latency_value.setText(f"{snap.p50_ms:.1f} ms / {snap.p95_ms:.1f} ms")
        health = controller.server.bridge.health
        self.database_value.setText(("reachable" if health.healthy else f"unreachable ({health.detail})")
                                    if controller.serving else "—")
        traffic = controller.stats.traffic(CHART_SECONDS, CHART_STEP)
        span = f"last {CHART_SECONDS // 60} min"
        self.rate_chart.set_values(traffic.rates, span, traffic.refused)
        self.latency_chart.set_values(traffic.latency, span)

    @staticmethod
    def _show_count(label: QLabel, part: int, total: int, colour: str) -> None:
        label.setText(_share(part, total))
        label.setStyleSheet(f"color: {colour}; font-weight: bold" if part else "")

    def _show_refusals(self, snap: Snapshot) -> None:
        if not snap.refusals:
            self.explanation = None
            self.notice.setVisible(False)
            return
        default_limit = self.controller.server.bridge.config.rate_limit.requests
        self.explanation = explain(snap.refusals[0], default_limit)
        self.notice_title.setText(f"<b>{self.explanation.headline}</b>")
        self.notice_text.setText(self.explanation.advice)
        others = [f"Also: {explain(r, default_limit).headline} ({r.count:,})" for r in snap.refusals[1:3]]
        if len(snap.refusals) > 3:
            others.append("The Requests page lists every refused call.")
        self.notice_others.setText("\n".join(others))
        self.notice_others.setVisible(bool(others))
        self.fix_button.setText(self.explanation.fix_label)
        self.fix_button.setVisible(bool(self.explanation.fix))
        self.notice.setVisible(True)

    @Slot()
    def open_fix(self) -> None:
        """Go where the refusal is fixed: the key on the Keys page, or the setting on the Settings page."""
        explanation, window = self.explanation, self.window()
        if explanation is None or not isinstance(window, MainWindow):
            return
        if explanation.fix == FIX_KEYS:
            keys = window.show_page(KeysPage.title)
            if explanation.key_name and isinstance(keys, KeysPage):
                keys.select(explanation.key_name)
        elif explanation.fix in (FIX_RATE_LIMIT, FIX_ADDRESS):
            settings = window.show_page(SettingsPage.title)
            if isinstance(settings, SettingsPage):
                field = settings.rate_requests if explanation.fix == FIX_RATE_LIMIT else settings.public_url
                _bring_into_view(field)


def _bring_into_view(field: QAbstractSpinBox | QLineEdit) -> None:
    """Scroll the setting into view, focus it, and select its value so typing replaces it."""
    parent = field.parentWidget()
    while parent is not None and not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    if parent is not None:
        parent.ensureWidgetVisible(field)
    field.setFocus(Qt.FocusReason.OtherFocusReason)
    field.selectAll()
