#!/usr/bin/env bash
# Installs the two servers the project runs locally and in tests: the Temporal CLI (dev server) and
# versitygw (S3-compatible). Idempotent: a tool already on PATH or already built in .cache/bin is skipped.
# Everything Go writes goes under .cache/ so CI can cache one folder and skip the ~minutes-long build.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${DDPM_TOOLS_CACHE:-$REPO_ROOT/.cache}"
BIN_DIR="$CACHE_DIR/bin"

TEMPORAL_MODULE="github.com/temporalio/cli/cmd/temporal"
# v1.6.0+ carries a `replace` directive in go.mod, which `go install pkg@version` refuses.
TEMPORAL_VERSION="v1.5.1"
VERSITYGW_MODULE="github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION="v1.7.0"
MIN_GO_MINOR=25

log() { printf '[install-tools] %s\n' "$*"; }
die() {
  printf '[install-tools] ERROR: %s\n' "$*" >&2
  exit 1
}

require_go() {
  command -v go >/dev/null 2>&1 ||
    die "Go >= 1.$MIN_GO_MINOR is required to build temporal and versitygw; install it from https://go.dev/dl/ (or your package manager) and re-run."
  local version major minor
  version="$(go env GOVERSION)" # e.g. go1.26.8
  major="$(printf '%s' "${version#go}" | cut -d. -f1)"
  minor="$(printf '%s' "${version#go}" | cut -d. -f2)"
  if [[ "$major" -lt 1 || ("$major" -eq 1 && "$minor" -lt "$MIN_GO_MINOR") ]]; then
    die "found $version but Go >= 1.$MIN_GO_MINOR is required to build temporal $TEMPORAL_VERSION; upgrade Go and re-run."
  fi
}

# Builds one tool unless a usable copy exists. Args: binary name, module path, version.
install_tool() {
  local name="$1" module="$2" version="$3"
  # The stamp records which version the cached binary is, so bumping a version above rebuilds it.
  local stamp="$BIN_DIR/.$name.version"
  if [[ -x "$BIN_DIR/$name" && "$(cat "$stamp" 2>/dev/null)" == "$module@$version" ]]; then
    log "$name: $version already built at $BIN_DIR/$name"
    return 0
  fi
  local on_path
  if on_path="$(command -v "$name" 2>/dev/null)" && [[ "$on_path" != "$BIN_DIR/$name" ]]; then
    log "$name: using $on_path from PATH (skipping build)"
    return 0
  fi
  require_go
  mkdir -p "$BIN_DIR" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build"
  log "$name: building $module@$version (first build takes a few minutes)..."
  local started=$SECONDS
  # -s -w drops debug symbols: a third smaller binary, which matters for CI caches.
  GOBIN="$BIN_DIR" GOMODCACHE="$CACHE_DIR/go/mod" GOCACHE="$CACHE_DIR/go/build" GOFLAGS="-modcacherw" \
    go install -ldflags="-s -w" "$module@$version"
  printf '%s\n' "$module@$version" >"$stamp"
  log "$name: installed $BIN_DIR/$name in $((SECONDS - started)) s"
}

install_tool temporal "$TEMPORAL_MODULE" "$TEMPORAL_VERSION"
install_tool versitygw "$VERSITYGW_MODULE" "$VERSITYGW_VERSION"
log "done. The TypeScript helpers in infra/local/ look in PATH, then $BIN_DIR."
