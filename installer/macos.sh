#!/usr/bin/env bash
# Build "Voka Bridge.app" with PyInstaller and wrap it in a compressed .dmg (run on macOS).
# Signing and notarization need the owner's Apple Developer identity: set SIGN_IDENTITY to enable.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q '.[installer]'
pyinstaller --noconfirm installer/voka-bridge.spec
app="dist/Voka Bridge.app"
if [ -n "${SIGN_IDENTITY:-}" ]; then
  codesign --deep --force --options runtime --sign "$SIGN_IDENTITY" "$app"
fi
version=$(python3 -c "import server; print(server.__version__)")
hdiutil create -volname "Voka Bridge" -srcfolder "$app" -ov -format UDZO "dist/VokaBridge-$version.dmg"
echo "built dist/VokaBridge-$version.dmg"
