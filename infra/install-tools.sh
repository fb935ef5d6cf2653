#!/usr/bin/env bash
# Installs the servers the project runs locally and in tests: the Temporal CLI (dev server) and versitygw
# (S3-compatible; only the tests need it). `npm run start-run` runs this for `temporal` on first use;
# `npm test`'s pretest for both.
#
#   infra/install-tools.sh [--quiet] [temporal] [versitygw]     (no names: both)
#
# A tool already on PATH (e.g. `brew install temporal`) is used as it is. Otherwise it is built with Go
# (>= 1.25) into $DDPM_TOOLS_CACHE/bin (default ~/.cache/ddpm-temporal/tools/bin, shared by every clone),
# with a progress line every 15 s. Each build goes to a temporary folder and is renamed into place when
# complete; its version stamp is written last, so a killed or failed build leaves nothing that a later
# run trusts. --quiet prints nothing when every tool is already there (start-run's first-use check).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=infra/install-lib.sh
source "$REPO_ROOT/infra/install-lib.sh"
LOG_TAG=install-tools
CACHE_DIR="${DDPM_TOOLS_CACHE:-$(default_cache_root)/tools}"
BIN_DIR="$CACHE_DIR/bin"
LOG_DIR="$CACHE_DIR/logs"

TEMPORAL_MODULE="github.com/temporalio/cli/cmd/temporal"
# v1.6.0+ carries a `replace` directive in go.mod, which `go install pkg@version` refuses.
TEMPORAL_VERSION="v1.5.1"
VERSITYGW_MODULE="github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION="v1.7.0"
MIN_GO_MINOR=25
# Packages each build compiles (go 1.26, linux/amd64), for the progress line's "n of about N".
TEMPORAL_PACKAGES=1300
VERSITYGW_PACKAGES=520

QUIET=0
TOOLS=()
for arg in "$@"; do
  case "$arg" in
    --quiet) QUIET=1 ;;
    temporal | versitygw) TOOLS+=("$arg") ;;
    -h | --help)
      sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg' (expected --quiet, temporal, versitygw)" ;;
  esac
done
((${#TOOLS[@]} > 0)) || TOOLS=(temporal versitygw)

say() { if ((QUIET == 0)); then log "$@"; fi; }

# What to do without Go, per tool: the one line a user needs.
no_go_hint() {
  case "$1" in
    temporal)
      printf '%s' "the Temporal CLI is not on PATH and Go is not installed to build it: install the CLI " \
        "(https://docs.temporal.io/cli#install: 'brew install temporal' or 'curl -sSf https://temporal.download/cli.sh | sh', " \
        "then put it on PATH), or install Go >= 1.$MIN_GO_MINOR (https://go.dev/dl/) and re-run; " \
        "or set TEMPORAL_ADDRESS to use a Temporal server you already run."
      ;;
    *) printf '%s' "$1 is not on PATH and Go is not installed to build it: install Go >= 1.$MIN_GO_MINOR (https://go.dev/dl/) and re-run." ;;
  esac
}

require_go() {
  command -v go >/dev/null 2>&1 || die "$(no_go_hint "$1")"
  local version major minor
  version="$(go env GOVERSION)" # e.g. go1.26.8
  major="$(printf '%s' "${version#go}" | cut -d. -f1)"
  minor="$(printf '%s' "${version#go}" | cut -d. -f2)"
  if [[ "$major" -lt 1 || ("$major" -eq 1 && "$minor" -lt "$MIN_GO_MINOR") ]]; then
    die "found $version but Go >= 1.$MIN_GO_MINOR is required to build $1; upgrade Go (https://go.dev/dl/) and re-run."
  fi
}

is_built() {
  local name="$1" module="$2" version="$3"
  [[ -x "$BIN_DIR/$name" && "$(cat "$BIN_DIR/.$name.version" 2>/dev/null)" == "$module@$version" ]]
}

# The progress line of a `go install -v` log: modules fetched and packages compiled so far.
# `go install -v` prints each package's import path as it compiles it (a line without spaces).
go_progress() {
  local downloads packages
  downloads="$(grep -c '^go: downloading ' "$1" || true)"
  packages="$(grep -cE '^[a-z0-9][^ ]*$' "$1" || true)"
  printf '%s modules downloaded, %s of about %s packages compiled' "$downloads" "$packages" "$GO_PACKAGES"
}

# Builds one tool unless a usable copy exists. Args: binary name, module path, version, package count.
install_tool() {
  local name="$1" module="$2" version="$3"
  if is_built "$name" "$module" "$version"; then
    say "$name $version: already built ($BIN_DIR/$name)"
    return 0
  fi
  local on_path
  if on_path="$(command -v "$name" 2>/dev/null)" && [[ "$on_path" != "$BIN_DIR/$name" ]]; then
    say "$name: using $on_path from PATH"
    return 0
  fi
  require_go "$name"
  take_lock "$CACHE_DIR/.install.lock"
  # Another command may have built it while this one waited for the lock.
  if is_built "$name" "$module" "$version"; then return 0; fi
  mkdir -p "$BIN_DIR" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build"
  local partial="$BIN_DIR/.partial-$name"
  rm -rf "$partial"
  mkdir -p "$partial"
  GO_PACKAGES="$4"
  local started=$SECONDS
  # -s -w drops debug symbols: a third smaller binary. Go's module and build caches stay in the cache
  # folder, so a rebuild (a version bump) takes seconds, not minutes; -trimpath keeps local paths out of
  # the build cache's keys, so that cache stays valid when the folder is moved or restored elsewhere (CI).
  run_step "go-install-$name" "$name $version: building with go install (a few minutes the first time; log: $LOG_DIR/go-install-$name.log)" \
    go_progress env GOBIN="$partial" GOMODCACHE="$CACHE_DIR/go/mod" GOCACHE="$CACHE_DIR/go/build" GOFLAGS="-modcacherw" \
    go install -v -trimpath -ldflags="-s -w" "$module@$version"
  [[ -x "$partial/$name" ]] || die "go install finished but produced no $name (log: $LOG_DIR/go-install-$name.log)."
  rm -f "$BIN_DIR/.$name.version"
  mv -f "$partial/$name" "$BIN_DIR/$name"
  rmdir "$partial"
  write_atomically "$BIN_DIR/.$name.version" "$module@$version"
  log "$name $version: installed $BIN_DIR/$name in $(elapsed $((SECONDS - started)))"
}

for tool in "${TOOLS[@]}"; do
  case "$tool" in
    temporal) install_tool temporal "$TEMPORAL_MODULE" "$TEMPORAL_VERSION" "$TEMPORAL_PACKAGES" ;;
    versitygw) install_tool versitygw "$VERSITYGW_MODULE" "$VERSITYGW_VERSION" "$VERSITYGW_PACKAGES" ;;
  esac
done
say "done. The TypeScript helpers in infra/local/ look in PATH, then $BIN_DIR."
