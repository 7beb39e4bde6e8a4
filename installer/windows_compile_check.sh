#!/usr/bin/env bash
# Compile installer/windows.iss with Inno Setup's ISCC.exe under Wine, on Linux, to prove the script
# compiles: its preprocessor directives, sections and [Code] are valid. Installs what is missing first
# (Wine with 32-bit support from apt, Inno Setup from npm; needs root for apt), packages a dummy payload
# (placeholder VokaBridge.exe / voka-bridge-cli.exe; PyInstaller cannot build the Windows bundle here),
# and writes nothing inside the repository. Exits non-zero when anything fails.
#
# It also checks that compiling WITHOUT /DAppVersion fails (the script must never fall back to a version
# of its own). Running the produced Setup.exe is left to the Windows job of installers.yml: under Wine 8
# the per-user Programs folder ({autopf}) cannot be expanded (see /work/shared/notes or installer/README.md).
#
# Environment: INNOSETUP_DIR (default /opt/innosetup), PYTHON (default python3), KEEP_OUTPUT=1 keeps the
# temporary folder and prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

innosetup_version=6.4.1  # npm package `innosetup`, which ships ISCC.exe
innosetup_dir=${INNOSETUP_DIR:-/opt/innosetup}
iscc="$innosetup_dir/node_modules/innosetup/bin/ISCC.exe"
python=${PYTHON:-python3}
export WINEDEBUG=-all WINEARCH=win32 WINEPREFIX="$innosetup_dir/wineprefix"

log() { echo "windows_compile_check: $*"; }

if ! command -v wine >/dev/null || ! dpkg -s wine32 >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    log "Wine (wine, wine32) is missing and installing it needs root"; exit 1
  fi
  log "installing Wine (wine, wine32; i386 architecture)"
  export DEBIAN_FRONTEND=noninteractive
  dpkg --add-architecture i386
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends wine wine32 >/dev/null
fi
if [ ! -f "$iscc" ]; then
  command -v npm >/dev/null || { log "npm is missing (apt-get install npm)"; exit 1; }
  log "installing Inno Setup $innosetup_version into $innosetup_dir"
  mkdir -p "$innosetup_dir"
  npm install --prefix "$innosetup_dir" --no-audit --no-fund --loglevel=error "innosetup@$innosetup_version" >/dev/null
fi
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  log "creating the Wine prefix $WINEPREFIX"
  wineboot -i >/dev/null 2>&1
  wineserver -w
fi

work=$(mktemp -d)
if [ "${KEEP_OUTPUT:-}" = 1 ]; then
  log "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi

# The dummy payload: the two programs the .iss names, plus a library folder like PyInstaller's.
payload="$work/dist/VokaBridge"
mkdir -p "$payload/_internal"
printf 'placeholder for the windowed tray app\n' >"$payload/VokaBridge.exe"
printf 'placeholder for the console companion\n' >"$payload/voka-bridge-cli.exe"
printf 'placeholder\n' >"$payload/_internal/base_library.zip"

# The icon: the real one from installer/make_icons.py when it, Pillow and PySide6 are available, else a tiny valid
# .ico (ISCC reads the icon file and fails on a broken one).
icons="$work/icons"
mkdir -p "$icons"
if [ -f installer/make_icons.py ] && "$python" -c "import PIL, PySide6.QtSvg" 2>/dev/null \
   && "$python" installer/make_icons.py "$icons" >/dev/null && [ -s "$icons/voka-bridge.ico" ]; then
  log "icon from installer/make_icons.py"
else
  log "icon: a generated 16x16 placeholder (installer/make_icons.py, Pillow or PySide6 not available)"
  "$python" - "$icons/voka-bridge.ico" <<'PY'
import struct, sys
size = 16
pixels = b"\x8a\x3c\x1e\xff" * size * size          # BGRA
mask = b"\x00" * (4 * size)                          # AND mask, rows padded to 32 bits
header = struct.pack("<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, len(pixels) + len(mask), 0, 0, 0, 0)
image = header + pixels + mask
with open(sys.argv[1], "wb") as out:
    out.write(struct.pack("<HHH", 0, 1, 1))
    out.write(struct.pack("<BBBBHHII", size, size, 0, 0, 1, 32, len(image), 6 + 16))
    out.write(image)
PY
fi

version=$(cd "$repo" && "$python" -c "import server; print(server.__version__)")
numeric=$("$python" -c "import re, sys; print(re.match(r'\d+(\.\d+){0,3}', sys.argv[1]).group())" "$version")
win() { winepath -w "$1" 2>/dev/null; }

compile() {  # compile [extra ISCC args...]; ISCC's output goes to $work/iscc.log
  wine "$iscc" /Q "/O$(win "$work/out")" "/DDistDir=$(win "$payload")" "/DIconFile=$(win "$icons/voka-bridge.ico")" \
    "$@" "$(win "$repo/installer/windows.iss")" >"$work/iscc.log" 2>&1
}

log "compiling installer/windows.iss (AppVersion $version) with ISCC.exe under Wine"
if ! compile "/DAppVersion=$version" "/DAppVersionNumeric=$numeric"; then
  cat "$work/iscc.log"
  log "FAILED: windows.iss does not compile"; exit 1
fi
setup="$work/out/VokaBridge-Setup-$version-x64.exe"
if [ ! -s "$setup" ]; then
  cat "$work/iscc.log"
  log "FAILED: no $(basename "$setup") was produced"; exit 1
fi
log "ok: $(basename "$setup") ($(stat -c %s "$setup") bytes)"

if compile; then
  log "FAILED: windows.iss compiled without /DAppVersion (it must refuse)"; exit 1
fi
if ! grep -q "AppVersion is not defined" "$work/iscc.log"; then
  cat "$work/iscc.log"
  log "FAILED: compiling without /DAppVersion failed, but not with the expected message"; exit 1
fi
log "ok: without /DAppVersion the compile stops with \"AppVersion is not defined\""
