#!/usr/bin/env bash
# lavapipe, Mesa's CPU Vulkan driver, so the WebGPU backend (Dawn) runs without a GPU: CI uses it to run
# the WebGPU gradient and optimizer tests on machines that have none. Debian 12's own Mesa (22.3) is
# rejected by Dawn; Mesa 25 from bookworm-backports works. Nothing is installed system-wide: the .debs
# are unpacked into the cache with a private apt configuration, and an ICD file names the driver there.
#
#   bash infra/lavapipe/install.sh [--print-env]
#
# Prints (with --print-env, only) the two exports that make Dawn find it:
#   export LD_LIBRARY_PATH=<cache>/root/usr/lib/x86_64-linux-gnu:...   (the Vulkan loader)
#   export VK_DRIVER_FILES=<cache>/lvp_icd.json
# Cached in ${XDG_CACHE_HOME:-~/.cache}/ddpm-temporal/lavapipe (DDPM_LAVAPIPE_CACHE moves it); a second
# run only prints. Fails with one line (exit 1) where apt-get is missing, the download fails or the driver
# lacks libraries this machine does not have; callers then go on without WebGPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../install-lib.sh
source infra/install-lib.sh
LOG_TAG=lavapipe

CACHE_DIR="${DDPM_LAVAPIPE_CACHE:-$(default_cache_root)/lavapipe}"
LIB_DIR="$CACHE_DIR/root/usr/lib/x86_64-linux-gnu"
ICD="$CACHE_DIR/lvp_icd.json"
STAMP="$CACHE_DIR/.installed-mesa-25"
print_env=0
[[ "${1:-}" == "--print-env" ]] && print_env=1

say() { if ((print_env)); then printf '[lavapipe] %s\n' "$*" >&2; else log "$*"; fi; }
fail() {
  printf '[lavapipe] cannot install: %s\n' "$*" >&2
  exit 1
}

if [[ ! -f "$STAMP" ]]; then
  [[ "$(uname -m)" == x86_64 ]] || fail "only x86_64 is set up here (this is $(uname -m))"
  command -v apt-get >/dev/null || fail "apt-get is not available"
  command -v dpkg-deb >/dev/null || fail "dpkg-deb is not available"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/parts" "$tmp/debs"
  cat >"$tmp/parts/bookworm.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_private=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$tmp/parts"
    -o "Dir::State::Lists=$tmp/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  say "downloading Mesa 25 (bookworm-backports) and the Vulkan loader (~12 MB)"
  apt-get "${apt_private[@]}" -qq update >"$tmp/apt.log" 2>&1 || fail "apt-get update failed: $(tail -1 "$tmp/apt.log")"
  (cd "$tmp/debs" && apt-get "${apt_private[@]}" -qq download mesa-vulkan-drivers/bookworm-backports \
    libvulkan1 >>"$tmp/apt.log" 2>&1) || fail "apt-get download failed: $(tail -1 "$tmp/apt.log")"
  rm -rf "$CACHE_DIR.partial"
  mkdir -p "$CACHE_DIR.partial"
  for deb in "$tmp"/debs/*.deb; do dpkg-deb -x "$deb" "$CACHE_DIR.partial/root"; done
  lvp="$CACHE_DIR.partial/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
  [[ -f "$lvp" ]] || fail "the package holds no libvulkan_lvp.so"
  missing="$(LD_LIBRARY_PATH="$(dirname "$lvp")" ldd "$lvp" | awk '/not found/ {print $1}' | tr '\n' ' ')"
  [[ -z "$missing" ]] || fail "the driver needs libraries this machine lacks: $missing"
  rm -rf "$CACHE_DIR"
  mv "$CACHE_DIR.partial" "$CACHE_DIR"
  # The ICD names the driver by absolute path: nothing else needs to find it.
  printf '{ "file_format_version": "1.0.0", "ICD": { "library_path": "%s", "api_version": "1.4.305" } }\n' \
    "$LIB_DIR/libvulkan_lvp.so" >"$ICD"
  touch "$STAMP"
  say "installed in $CACHE_DIR"
fi

if ((print_env)); then
  printf 'export LD_LIBRARY_PATH=%q\n' "$LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  printf 'export VK_DRIVER_FILES=%q\n' "$ICD"
else
  log "ready: eval \"\$(bash $0 --print-env)\" makes WebGPU run on it"
fi
