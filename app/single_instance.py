"""One app per user and home folder: a second launch asks the first to show its window, then exits."""

from __future__ import annotations

import getpass
import hashlib

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from server.paths import Paths

CONNECT_TIMEOUT_MS = 500


def instance_name(paths: Paths) -> str:
    digest = hashlib.sha256(f"{getpass.getuser()}|{paths.config_dir}".encode()).hexdigest()[:16]
    return f"voka-bridge-{digest}"


class SingleInstance(QObject):
    activated = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.server: QLocalServer | None = None

    def claim(self) -> bool:
        """True when this is the first instance; else the first one is told to show itself."""
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if socket.waitForConnected(CONNECT_TIMEOUT_MS):
            socket.write(b"show\n")
            socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
            socket.disconnectFromServer()
            return False
        QLocalServer.removeServer(self.name)  # a crashed instance may have left its socket file
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._on_connection)
        return self.server.listen(self.name)

    @Slot()
    def _on_connection(self) -> None:
        assert self.server is not None
        while self.server.hasPendingConnections():
            connection = self.server.nextPendingConnection()
            connection.readyRead.connect(connection.readAll)
            connection.disconnected.connect(connection.deleteLater)
            self.activated.emit()

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
