"""The tray icon: state at a glance (colour and shape), a tooltip, and the owner's everyday menu."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.controller import AppController
from app.icons import state_icon
from server.autostart import Autostart, launch_command
from server.notices import Notice
from server.status import Status


class Tray(QObject):
    def __init__(self, controller: AppController, autostart: Autostart, *, open_dashboard: Callable[[], None],
                 quit_app: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.autostart = autostart
        self.available = QSystemTrayIcon.isSystemTrayAvailable()
        self.icon = QSystemTrayIcon(state_icon("stopped"), self)
        self.menu = QMenu()
        self.open_action = self._action("Open dashboard", open_dashboard)
        self.menu.addSeparator()
        self.toggle_action = self._action("Start server", controller.toggle)
        self.copy_url_action = self._action("Copy Voka URL", self.copy_url)
        self.copy_key_action = self._action("Copy API key", self.copy_key)
        self.menu.addSeparator()
        self.autostart_action = self._action("Start at login", self.set_autostart)
        self.autostart_action.setCheckable(True)
        self.autostart_action.setChecked(autostart.enabled())
        self.autostart_action.setToolTip(f"Start Voka Bridge when you log in ({autostart.where()})")
        self.menu.addSeparator()
        self.quit_action = self._action("Quit", quit_app)
        self.quit_action.setToolTip("Stop the server (calls in progress finish) and close the app")
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)
        self._open = open_dashboard
        controller.statusChanged.connect(self.show_status)
        controller.serverStateChanged.connect(lambda _state: self.show_status(controller.status))
        controller.ticked.connect(self._refresh_tooltip)
        controller.noticeRaised.connect(self.show_notice)
        self.state = "stopped"
        self.show_status(controller.status)
        if self.available:
            self.icon.show()

    def _action(self, text: str, slot: Callable[[], object]) -> QAction:
        action = QAction(text, self.menu)
        action.triggered.connect(lambda _checked=False: slot())
        self.menu.addAction(action)
        return action

    @Slot(object)
    def show_status(self, status: Status) -> None:
        self.state = status.state
        self.icon.setIcon(state_icon(status.state))
        running = self.controller.server.state in ("serving", "starting")
        self.toggle_action.setText("Stop server" if running else "Start server")
        self.copy_url_action.setEnabled(self.controller.serving)
        self._refresh_tooltip()

    def tooltip(self) -> str:
        snap = self.controller.stats.snapshot()
        lines = [f"Voka Bridge: {self.controller.status.label}"]
        if self.controller.serving:
            lines.append(self.controller.voka_url)
        if not self.controller.serving or self.controller.status.state != "serving":  # degraded: say why
            lines.append(self.controller.status.reason)
        lines.append(f"Requests today: {snap.requests_today}")
        if snap.last_error:
            lines.append(f"Last error: {snap.last_error}")
        return "\n".join(lines)

    @Slot()
    def _refresh_tooltip(self, *_args: object) -> None:
        self.icon.setToolTip(self.tooltip())

    def copy_url(self) -> None:
        QGuiApplication.clipboard().setText(self.controller.voka_url)

    def copy_key(self) -> None:
        def done(key: object) -> None:
            if key is None:
                self.controller.notify_text(
                    "No API key to copy", "No key's secret is on this PC: create a key on the Keys page, or "
                    "rotate one there if this PC has no keyring to keep secrets in.")
                return
            QGuiApplication.clipboard().setText(key.secret)  # type: ignore[attr-defined]

        self.controller.voka_key(done)

    def set_autostart(self) -> None:
        wanted = self.autostart_action.isChecked()
        self.controller.set_autostart(self.autostart, wanted, launch_command(self.controller.home),
                                      on_done=self.autostart_action.setChecked)

    @Slot(object)
    def show_notice(self, notice: Notice) -> None:
        if self.available and self.icon.isVisible():
            level = (QSystemTrayIcon.MessageIcon.Critical if notice.critical
                     else QSystemTrayIcon.MessageIcon.Information)
            self.icon.showMessage(notice.title, notice.text, level, 8000)

    @Slot(QSystemTrayIcon.ActivationReason)
    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self._open()

    def hide(self) -> None:
        self.icon.hide()
