; Inno Setup 6 script: wraps the PyInstaller one-folder build (dist\VokaBridge) into
; VokaBridge-Setup-<version>-x64.exe, a per-user installer that needs no administrator rights.
;
; Build on Windows, from the repository root, after `pyinstaller --noconfirm installer\voka-bridge.spec`:
;   for /f %v in ('python -c "import server; print(server.__version__)"') do set VERSION=%v
;   iscc /DAppVersion=%VERSION% installer\windows.iss
; (.github/workflows/installers.yml does exactly this.) The version is never written here: server/__init__.py
; holds the one version source and the build passes it in.
;
; Optional defines (iscc /DName=value):
;   AppVersionNumeric  four-part numeric form for the file version resource (default: AppVersion)
;   DistDir            the PyInstaller folder to package   (default: ..\dist\VokaBridge)
;   IconFile           the setup/uninstall icon            (default: ..\build\icons\voka-bridge.ico, written by the spec)
;   SignToolName       sign Setup.exe and the uninstaller with the sign tool of that name, given to iscc as
;                      /S<name>=<command with $f>  (the workflow does this when the WINDOWS_CERT_PFX_BASE64 secret exists)
;
; Where the owner's things live (server/paths.py: platformdirs, app name "VokaBridge", appauthor=False):
; config.toml, tools.toml, state.sqlite3 (keys, audit), demo.sqlite3 and Logs\ all sit in
; %LOCALAPPDATA%\VokaBridge, never in the program folder. Installing, upgrading and repairing never touch
; that folder; uninstalling removes it only when the owner answers Yes to the question it asks.

#ifndef AppVersion
  #error AppVersion is not defined: compile with iscc /DAppVersion=<server.__version__> (the one version source)
#endif
#ifndef AppVersionNumeric
  #define AppVersionNumeric AppVersion
#endif
#ifndef DistDir
  #define DistDir "..\dist\VokaBridge"
#endif
#ifndef IconFile
  #define IconFile "..\build\icons\voka-bridge.ico"
#endif

; Never change the AppId: it is how an upgrade finds the installed copy (and its folder and tasks).
#define AppGuid "6B0E6E3C-58F4-4C8B-9B7A-0F4C1D2E9A11"
#define AppGuidBraced "{" + AppGuid + "}"
#define AppName "Voka Bridge"
#define AppExe "VokaBridge.exe"
#define CliExe "voka-bridge-cli.exe"
; The same Run-key value the app writes for its own "Start at login" switch (server/autostart.py).
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"
#define RunValue "VokaBridge"

[Setup]
; "{{" is Inno's escape for a literal "{" in a directive value.
AppId={#"{" + AppGuidBraced}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Voka
AppCopyright=Voka
; Per user: {autopf} is %LOCALAPPDATA%\Programs under PrivilegesRequired=lowest; no UAC prompt, ever.
PrivilegesRequired=lowest
DefaultDirName={autopf}\{#AppName}
DisableProgramGroupPage=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
VersionInfoVersion={#AppVersionNumeric}
VersionInfoProductName={#AppName}
VersionInfoProductTextVersion={#AppVersion}
VersionInfoDescription={#AppName} Setup
VersionInfoCompany=Voka
OutputDir=..\dist
OutputBaseFilename=VokaBridge-Setup-{#AppVersion}-x64
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
; The tray app may be running during an upgrade or uninstall: ask Windows to close it first.
CloseApplications=yes
#ifdef SignToolName
SignTool={#SignToolName}
SignedUninstaller=yes
#else
  #pragma message "unsigned build: no WINDOWS_CERT secret (SignToolName not defined)"
#endif

[Tasks]
; Offered on a first install only: on an upgrade the owner's own choice in the app (tray menu or
; Settings > Start at login, the same Run-key value) stays as it is.
Name: "startatlogin"; Description: "Start {#AppName} when I log in"; Check: IsFirstInstall
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[InstallDelete]
; An upgrade replaces the whole bundle; libraries dropped by the new version must not linger.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
; The windowed tray app and, beside it, the console companion (serve, keys, check) from the same bundle.
Source: "{#DistDir}\{#AppExe}"; DestDir: "{app}"; Flags: ignoreversion
Source: "{#DistDir}\{#CliExe}"; DestDir: "{app}"; Flags: ignoreversion
Source: "{#DistDir}\*"; DestDir: "{app}"; Excludes: "\{#AppExe},\{#CliExe}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Connect your shop's database to Voka AI"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "{#RunValue}"; ValueData: """{app}\{#AppExe}"" gui"; Tasks: startatlogin; Flags: uninsdeletevalue

[Run]
Filename: "{app}\{#AppExe}"; Description: "Start {#AppName} now"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
Type: dirifempty; Name: "{app}"

[Code]
const
  UninstallKey = 'Software\Microsoft\Windows\CurrentVersion\Uninstall\{#AppGuidBraced}_is1';

var
  FirstInstall: Boolean;
  DeleteOwnerData: Boolean;

function OwnerDataDir(): String;
begin
  { platformdirs.user_data_dir("VokaBridge", appauthor=False) = user_config_dir = %LOCALAPPDATA%\VokaBridge }
  Result := ExpandConstant('{localappdata}\VokaBridge');
end;

function InitializeSetup(): Boolean;
begin
  { Decided once, before anything is written: is a copy of Voka Bridge already installed for this user? }
  FirstInstall := not RegKeyExists(HKCU, UninstallKey);
  Result := True;
end;

function IsFirstInstall(): Boolean;
begin
  Result := FirstInstall;
end;

function InitializeUninstall(): Boolean;
begin
  Result := True;
  DeleteOwnerData := False;
  { A silent uninstall never deletes the owner's data. }
  if UninstallSilent() or not DirExists(OwnerDataDir()) then
    Exit;
  DeleteOwnerData := MsgBox('Also delete your Voka Bridge data?' + #13#10 + #13#10 +
    'Settings, the tool catalog, API keys, the audit log, logs and the demo database in' + #13#10 +
    OwnerDataDir() + #13#10 + #13#10 +
    'Yes: delete them for good (API keys stop working).' + #13#10 +
    'No: keep them, so a later install of Voka Bridge carries on where you left off.',
    mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usUninstall then
    { The app writes this value itself for "Start at login"; never leave it pointing at a removed program. }
    RegDeleteValue(HKCU, '{#RunKey}', '{#RunValue}');
  if (CurUninstallStep = usPostUninstall) and DeleteOwnerData then
    if not DelTree(OwnerDataDir(), True, True, True) then
      MsgBox('Some of your data could not be deleted: ' + OwnerDataDir(), mbInformation, MB_OK);
end;
