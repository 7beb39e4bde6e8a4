#!/usr/bin/env bash
# Build "Voka Bridge.app" (tray-only: LSUIElement, set in installer/voka-bridge.spec) with PyInstaller and
# wrap it in dist/VokaBridge-<version>-macos-<arch>.dmg, with an /Applications link to drag it onto.
# Run on macOS from anywhere: installer/macos.sh
#
# Environment (all optional; without them the result is an unsigned, unnotarized build that says so):
#   SIGN_IDENTITY        a "Developer ID Application: …" identity in the keychain: every binary in the app,
#                        then the app, then the .dmg are signed with the hardened runtime and a timestamp
#   APPLE_ID, APPLE_TEAM_ID, APPLE_APP_PASSWORD      notarize with an Apple ID and app-specific password, or
#   APPLE_API_KEY_PATH, APPLE_API_KEY_ID, APPLE_API_ISSUER   notarize with an App Store Connect API key;
#                        then the app and the .dmg are submitted with `notarytool --wait` and stapled
#   SKIP_BUILD=1         package the existing dist/ (the workflow builds and smoke-tests first)
#   PYTHON               the Python to build with (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
app="dist/Voka Bridge.app"
log() { echo "macos.sh: $*"; }
fail() { echo "macos.sh: error: $*" >&2; exit 1; }

[ "$(uname -s)" = Darwin ] || fail "this builds the macOS app and must run on macOS"

if [ "${SKIP_BUILD:-}" != 1 ]; then
  "$python" -m pip install -c constraints.txt ".[installer]"
  "$python" -m PyInstaller --noconfirm installer/voka-bridge.spec
fi
[ -d "$app" ] || fail "$app is missing: build it with pyinstaller --noconfirm installer/voka-bridge.spec"

version=$("$python" -c "import server; print(server.__version__)")
plist="$app/Contents/Info.plist"
bundle_version=$(/usr/libexec/PlistBuddy -c "Print :CFBundleShortVersionString" "$plist")
[ "$bundle_version" = "$version" ] \
  || fail "$plist says version $bundle_version, server.__version__ says $version (the one version source)"
[ "$(/usr/libexec/PlistBuddy -c "Print :LSUIElement" "$plist" 2>/dev/null)" = true ] \
  || fail "$plist lacks LSUIElement=true: the app must live in the menu bar only"

archs=$(lipo -archs "$app/Contents/MacOS/VokaBridge")
case "$archs" in
  arm64 | x86_64) arch=$archs ;;
  *) arch=universal2 ;;
esac
dmg="dist/VokaBridge-$version-macos-$arch.dmg"

# Hardened runtime entitlements: Python's ctypes/cffi callbacks need writable+executable memory (the keyring's
# macOS backend uses them). Nothing else is relaxed.
entitlements="build/voka-bridge.entitlements"
mkdir -p build
cat >"$entitlements" <<'PLIST'
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>com.apple.security.cs.allow-unsigned-executable-memory</key>
  <true/>
</dict>
</plist>
PLIST

sign() {  # sign PATH...: hardened runtime, secure timestamp, our entitlements
  codesign --force --options runtime --timestamp --entitlements "$entitlements" --sign "$SIGN_IDENTITY" "$@"
}

deepest_first() { awk -F/ '{ print NF "\t" $0 }' | sort -rn | cut -f2-; }

signed=false
if [ -n "${SIGN_IDENTITY:-}" ]; then
  log "signing with \"$SIGN_IDENTITY\" (hardened runtime): inner binaries, then frameworks, then the app"
  count=0
  while IFS= read -r file; do
    if file -b "$file" | grep -q "Mach-O"; then
      sign "$file"
      count=$((count + 1))
    fi
  done < <(find "$app/Contents" -type f | deepest_first)
  while IFS= read -r framework; do
    # A framework is signed as a bundle when it is one (has its Info.plist); its binary is signed above.
    if [ -f "$framework/Resources/Info.plist" ] || [ -f "$framework/Versions/Current/Resources/Info.plist" ]; then
      sign "$framework"
    fi
  done < <(find "$app/Contents" -type d -name "*.framework" | deepest_first)
  sign "$app"
  codesign --verify --deep --strict --verbose=2 "$app"
  log "signed $count binaries and the app"
  signed=true
else
  log "unsigned build: SIGN_IDENTITY is not set (no MACOS_SIGN_IDENTITY secret); Gatekeeper will warn"
fi

notary_auth=()
if [ -n "${APPLE_ID:-}" ] && [ -n "${APPLE_TEAM_ID:-}" ] && [ -n "${APPLE_APP_PASSWORD:-}" ]; then
  notary_auth=(--apple-id "$APPLE_ID" --team-id "$APPLE_TEAM_ID" --password "$APPLE_APP_PASSWORD")
elif [ -n "${APPLE_API_KEY_PATH:-}" ] && [ -n "${APPLE_API_KEY_ID:-}" ] && [ -n "${APPLE_API_ISSUER:-}" ]; then
  notary_auth=(--key "$APPLE_API_KEY_PATH" --key-id "$APPLE_API_KEY_ID" --issuer "$APPLE_API_ISSUER")
fi
notarize() {  # notarize FILE: submit, wait for Apple's verdict, staple the ticket to TARGET
  local file=$1 target=$2
  log "notarizing $target (notarytool submit --wait)"
  xcrun notarytool submit "$file" "${notary_auth[@]}" --wait --timeout 30m
  xcrun stapler staple "$target"
  xcrun stapler validate "$target"
}
notarized=false
if [ ${#notary_auth[@]} -gt 0 ]; then
  [ "$signed" = true ] || fail "notarization credentials are set but SIGN_IDENTITY is not: Apple notarizes signed code only"
  # The app first (so it carries its own ticket once copied out of the .dmg), then the .dmg itself.
  zip="build/VokaBridge-$version-macos-$arch.zip"
  ditto -c -k --keepParent "$app" "$zip"
  notarize "$zip" "$app"
  rm -f "$zip"
  spctl --assess --type execute --verbose=2 "$app"
  notarized=true
else
  log "not notarized: set APPLE_ID, APPLE_TEAM_ID and APPLE_APP_PASSWORD (or APPLE_API_KEY_PATH, APPLE_API_KEY_ID, APPLE_API_ISSUER)"
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
ditto "$app" "$staging/Voka Bridge.app"
ln -s /Applications "$staging/Applications"
rm -f "$dmg"
hdiutil create -volname "Voka Bridge $version" -srcfolder "$staging" -fs HFS+ -format UDZO -ov "$dmg"
if [ "$signed" = true ]; then
  codesign --force --timestamp --sign "$SIGN_IDENTITY" "$dmg"
fi
if [ "$notarized" = true ]; then
  notarize "$dmg" "$dmg"
fi
echo "built $dmg (signed: $signed, notarized: $notarized)"
