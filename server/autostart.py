"""Start at login, per OS: an XDG autostart file (Linux), a LaunchAgent (macOS), the Run key (Windows).

All three are written and removed by the same three calls: `enabled()`, `enable(command)`, `disable()`.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

APP_NAME = "Voka Bridge"
LAUNCH_AGENT_LABEL = "ai.voka.bridge"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "VokaBridge"


def launch_command(home: str | None = None) -> list[str]:
    """How to start the tray app again: the frozen executable, or this Python running `app`."""
    command = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "app"]
    command.append("gui")
    if home:
        command += ["--home", str(Path(home).expanduser().resolve())]
    return command


class Autostart(ABC):
    @abstractmethod
    def enabled(self) -> bool: ...

    @abstractmethod
    def enable(self, command: list[str]) -> None: ...

    @abstractmethod
    def disable(self) -> None: ...

    @abstractmethod
    def where(self) -> str:
        """Where the entry lives, for people."""


_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`=%')
_STRING_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _desktop_exec(command: list[str]) -> str:
    """Quote arguments as the Desktop Entry spec's Exec key requires (quoting, then string escaping)."""
    quoted = []
    for arg in command:
        if arg and not any(c in _RESERVED for c in arg):
            quoted.append(arg)
            continue
        inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
        quoted.append(f'"{inner}"')
    return " ".join(quoted).replace("%", "%%").replace("\\", "\\\\")


def desktop_exec_args(exec_line: str) -> list[str]:
    """The argument list an Exec value stands for, read back by the spec's rules (checks and tests)."""
    text, i = "", 0
    while i < len(exec_line):  # string escapes first
        if exec_line[i] == "\\" and i + 1 < len(exec_line):
            text += _STRING_ESCAPES.get(exec_line[i + 1], exec_line[i + 1])
            i += 2
        else:
            text += exec_line[i]
            i += 1
    args: list[str] = []
    current, in_quotes, started, i = "", False, False, 0
    while i < len(text):
        c = text[i]
        if in_quotes and c == "\\" and i + 1 < len(text):
            current += text[i + 1]
            i += 2
            continue
        if c == '"':
            in_quotes, started = not in_quotes, True
        elif c == " " and not in_quotes:
            if started:
                args.append(current)
            current, started = "", False
        else:
            current += c
            started = True
        i += 1
    if started:
        args.append(current)
    return [arg.replace("%%", "%") for arg in args]


class XdgAutostart(Autostart):
    def __init__(self, config_home: Path | None = None) -> None:
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self.file = base / "autostart" / "voka-bridge.desktop"

    def enabled(self) -> bool:
        if not self.file.is_file():
            return False
        text = self.file.read_text(encoding="utf-8")
        return "Hidden=true" not in text and "X-GNOME-Autostart-enabled=false" not in text

    def enable(self, command: list[str]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        entry = "\n".join([
            "[Desktop Entry]", "Type=Application", f"Name={APP_NAME}",
            "Comment=Connects your shop's database to Voka AI", f"Exec={_desktop_exec(command)}",
            "Icon=voka-bridge", "Terminal=false", "X-GNOME-Autostart-enabled=true", ""])
        temp = self.file.with_suffix(".tmp")
        temp.write_text(entry, encoding="utf-8")
        temp.replace(self.file)

    def disable(self) -> None:
        self.file.unlink(missing_ok=True)

    def where(self) -> str:
        return str(self.file)


class LaunchAgent(Autostart):
    def __init__(self, agents_dir: Path | None = None) -> None:
        self.file = (agents_dir or Path.home() / "Library" / "LaunchAgents") / f"{LAUNCH_AGENT_LABEL}.plist"

    def enabled(self) -> bool:
        if not self.file.is_file():
            return False
        with self.file.open("rb") as handle:
            return bool(plistlib.load(handle).get("RunAtLoad"))

    def enable(self, command: list[str]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self.file.open("wb") as handle:
            plistlib.dump({"Label": LAUNCH_AGENT_LABEL, "ProgramArguments": command, "RunAtLoad": True,
                           "ProcessType": "Interactive"}, handle)

    def disable(self) -> None:
        self.file.unlink(missing_ok=True)

    def where(self) -> str:
        return str(self.file)


class WindowsRunKey(Autostart):
    """HKCU\\...\\Run: a per-user entry; no administrator rights needed."""

    def __init__(self, registry: Any = None) -> None:
        if registry is None:
            import winreg as registry  # type: ignore[import-not-found, no-redef]
        self.reg = registry

    def _open(self, write: bool) -> Any:
        access = self.reg.KEY_SET_VALUE if write else self.reg.KEY_QUERY_VALUE
        return self.reg.OpenKey(self.reg.HKEY_CURRENT_USER, RUN_KEY, 0, access)

    def enabled(self) -> bool:
        try:
            with self._open(False) as key:
                self.reg.QueryValueEx(key, RUN_VALUE)
            return True
        except FileNotFoundError:
            return False

    def enable(self, command: list[str]) -> None:
        with self._open(True) as key:
            self.reg.SetValueEx(key, RUN_VALUE, 0, self.reg.REG_SZ, subprocess.list2cmdline(command))

    def disable(self) -> None:
        try:
            with self._open(True) as key:
                self.reg.DeleteValue(key, RUN_VALUE)
        except FileNotFoundError:
            pass

    def where(self) -> str:
        return f"HKEY_CURRENT_USER\\{RUN_KEY}\\{RUN_VALUE}"


def for_platform(platform: str = sys.platform) -> Autostart:
    if platform.startswith("win"):
        return WindowsRunKey()
    if platform == "darwin":
        return LaunchAgent()
    return XdgAutostart()
