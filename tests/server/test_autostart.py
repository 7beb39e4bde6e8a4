"""Start at login: the Linux XDG file for real, the macOS LaunchAgent plist, and the Windows Run key
(with a stand-in registry, the one thing that cannot exist here)."""

from __future__ import annotations

import configparser
import plistlib
import subprocess
import sys
from pathlib import Path

from server.autostart import (
    RUN_KEY,
    RUN_VALUE,
    LaunchAgent,
    WindowsRunKey,
    XdgAutostart,
    desktop_exec_args,
    for_platform,
    launch_command,
)


def test_xdg_autostart_file_is_written_parsed_launchable_and_removed(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    autostart = for_platform("linux")
    assert isinstance(autostart, XdgAutostart)
    home = tmp_path / "my shop $home"
    command = launch_command(str(home))
    assert not autostart.enabled()
    autostart.enable(command)
    entry = tmp_path / "cfg" / "autostart" / "voka-bridge.desktop"
    assert autostart.enabled() and entry.is_file()
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(entry)
    section = parser["Desktop Entry"]
    assert section["Type"] == "Application" and section["Name"] == "Voka Bridge"
    args = desktop_exec_args(section["Exec"])
    assert args == command and args[-1] == str(home.resolve())
    # the entry really starts this program: run its command asking only for the version
    version = subprocess.run([*args[:args.index("gui")], "--version"], capture_output=True, text=True,
                             timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert version.returncode == 0 and version.stdout.startswith("voka-bridge ")
    autostart.disable()
    assert not entry.exists() and not autostart.enabled()
    autostart.disable()  # removing twice is fine


def test_launch_agent_plist(tmp_path: Path):
    agent = LaunchAgent(tmp_path / "LaunchAgents")
    agent.enable(["/Applications/Voka Bridge.app/Contents/MacOS/Voka Bridge", "gui"])
    with agent.file.open("rb") as handle:
        data = plistlib.load(handle)
    assert data["Label"] == "ai.voka.bridge" and data["RunAtLoad"] is True
    assert data["ProgramArguments"][0].endswith("Voka Bridge")
    assert agent.enabled()
    agent.disable()
    assert not agent.enabled()


class FakeRegistry:
    """winreg's calls over a dict: Windows' registry cannot exist on this machine."""

    HKEY_CURRENT_USER, KEY_SET_VALUE, KEY_QUERY_VALUE, REG_SZ = "HKCU", 2, 1, 1

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    class _Key:
        def __init__(self, path: str) -> None:
            self.path = path

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def OpenKey(self, root: str, path: str, reserved: int, access: int):  # type: ignore[no-untyped-def]
        return self._Key(f"{root}\\{path}")

    def QueryValueEx(self, key, name):  # type: ignore[no-untyped-def]
        try:
            return self.values[(key.path, name)], self.REG_SZ
        except KeyError:
            raise FileNotFoundError(name) from None

    def SetValueEx(self, key, name, reserved, kind, value):  # type: ignore[no-untyped-def]
        self.values[(key.path, name)] = value

    def DeleteValue(self, key, name):  # type: ignore[no-untyped-def]
        if self.values.pop((key.path, name), None) is None:
            raise FileNotFoundError(name)


def test_windows_run_key_quotes_the_command():
    registry = FakeRegistry()
    run = WindowsRunKey(registry)
    assert not run.enabled()
    run.enable([r"C:\Program Files\Voka Bridge\VokaBridge.exe", "gui"])
    assert registry.values[(f"HKCU\\{RUN_KEY}", RUN_VALUE)] == \
        r'"C:\Program Files\Voka Bridge\VokaBridge.exe" gui'
    assert run.enabled()
    run.disable()
    run.disable()
    assert not run.enabled()


def test_launch_command_runs_the_app_module():
    command = launch_command(None)
    assert command[:3] == [sys.executable, "-m", "app"] and command[-1] == "gui"
