; Inno Setup script: wraps the PyInstaller folder build (dist\VokaBridge) into VokaBridge-Setup.exe.
; Build on Windows after `pyinstaller installer\voka-bridge.spec`:  iscc installer\windows.iss
#define AppVersion "0.1.0"

[Setup]
AppId={{6B0E6E3C-58F4-4C8B-9B7A-0F4C1D2E9A11}
AppName=Voka Bridge
AppVersion={#AppVersion}
AppPublisher=Voka Bridge
DefaultDirName={autopf}\Voka Bridge
DefaultGroupName=Voka Bridge
PrivilegesRequired=lowest
OutputBaseFilename=VokaBridge-Setup-{#AppVersion}
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
SourceDir=..

[Files]
Source: "dist\VokaBridge\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\Voka Bridge"; Filename: "{app}\VokaBridge.exe"
Name: "{userdesktop}\Voka Bridge"; Filename: "{app}\VokaBridge.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\VokaBridge.exe"; Description: "Start Voka Bridge"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; The app removes its own Run-key entry ("Start at login") when the owner unticks it; make sure it is gone.
Filename: "reg.exe"; Parameters: "delete HKCU\Software\Microsoft\Windows\CurrentVersion\Run /v VokaBridge /f"; Flags: runhidden; RunOnceId: "RemoveRunKey"
