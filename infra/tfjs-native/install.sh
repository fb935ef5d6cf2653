#!/usr/bin/env bash
# Installs @tensorflow/tfjs-node (native TensorFlow CPU kernels for TF.js) without Google storage: the
# npm package's own install script downloads libtensorflow from storage.googleapis.com, which this
# project's machines cannot reach. Instead we take libtensorflow_cc/libtensorflow_framework from the
# `tensorflow-cpu` PyPI wheel (same C and eager API) and compile tfjs-node's N-API binding against it.
#
# Layout (all under .cache/, gitignored, so CI can cache one folder):
#   .cache/tfjs-native/libtensorflow-<tf>/{lib,include}   stripped TF shared libraries + the C headers
#   .cache/tfjs-native/node-prefix/node_modules/...        tfjs-node and its npm deps, binding built there
# The project's backend loader (core/backend/candidates/tensorflow.ts) loads tfjs-node from the prefix when
# node_modules has no working copy; nothing is linked into node_modules, which stays npm's alone (a link
# there makes later `npm install`s fail with ENOTDIR on the optional dependency).
# Idempotent: each step is skipped when its output exists; a finished install only re-verifies and
# re-verifies (~1 s). Not run by `npm install`, so a failure here can never break a plain npm install.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRIPT_DIR="$REPO_ROOT/infra/tfjs-native"
CACHE_DIR="${TFJS_NATIVE_CACHE:-$REPO_ROOT/.cache/tfjs-native}"
# Verified: 2.18.1 and 2.20.0 (2.21.0 has no manylinux2014 wheel). Needs a wheel with libtensorflow_cc.so.2.
TF_VERSION="${TFJS_NATIVE_TF_VERSION:-2.18.1}"
TFJS_VERSION="4.22.0"

LIBTF_DIR="$CACHE_DIR/libtensorflow-$TF_VERSION"
PREFIX_DIR="$CACHE_DIR/node-prefix"
WHEEL_DIR="$CACHE_DIR/wheels"
LOG_DIR="$CACHE_DIR/logs"
TFJS_NODE_DIR="$PREFIX_DIR/node_modules/@tensorflow/tfjs-node"
PROJECT_LINK="$REPO_ROOT/node_modules/@tensorflow/tfjs-node"
STAMP="$TFJS_NODE_DIR/.built-against-tensorflow-$TF_VERSION"

log() { printf '[tfjs-native] %s\n' "$*"; }
die() {
  printf '[tfjs-native] ERROR: %s\n' "$*" >&2
  exit 1
}

# Runs a noisy command with its output in a log file; on failure shows the tail and names the log.
# Args: step name, command...
run_logged() {
  local step="$1"
  shift
  mkdir -p "$LOG_DIR"
  local logfile="$LOG_DIR/$step.log"
  if ! "$@" >"$logfile" 2>&1; then
    tail -n 25 "$logfile" >&2
    die "step '$step' failed (full log: $logfile); fix the cause above and re-run $0."
  fi
}

check_platform() {
  [[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]] ||
    die "only Linux x86_64 is supported (found $(uname -s) $(uname -m)); elsewhere install @tensorflow/tfjs-node from npm normally."
  # PyPI TensorFlow wheels are compiled with AVX; without it the library dies with SIGILL on load.
  grep -qw avx /proc/cpuinfo || die "this CPU lacks AVX, which the tensorflow-cpu wheels require."
  command -v node >/dev/null || die "node is not on PATH; install Node.js >= 20."
  command -v npm >/dev/null || die "npm is not on PATH; it comes with Node.js."
  command -v python3 >/dev/null || die "python3 is not on PATH; it is needed for pip (wheel download) and node-gyp."
  python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip; install it (e.g. apt-get install python3-pip)."
  command -v c++ >/dev/null || die "no C++ compiler (c++) on PATH; install build-essential / g++."
  command -v make >/dev/null || die "make is not on PATH; install build-essential."
  command -v strip >/dev/null || die "strip is not on PATH; install binutils."
  [[ -f "$REPO_ROOT/node_modules/@tensorflow/tfjs-core/package.json" ]] ||
    die "node_modules/@tensorflow/tfjs-core is missing; run 'npm install' in $REPO_ROOT first."
  local core_version
  core_version="$(node -p "require('$REPO_ROOT/node_modules/@tensorflow/tfjs-core/package.json').version")"
  [[ "$core_version" == "$TFJS_VERSION" ]] ||
    die "project has @tensorflow/tfjs-core $core_version but tfjs-node $TFJS_VERSION needs $TFJS_VERSION; align the versions."
}

fetch_wheel() {
  if compgen -G "$WHEEL_DIR/tensorflow_cpu-$TF_VERSION-*.whl" >/dev/null; then return 0; fi
  log "downloading tensorflow-cpu $TF_VERSION wheel from PyPI (~230 MB)..."
  mkdir -p "$WHEEL_DIR"
  # Only the .so files and C headers are used, so the wheel's Python version is irrelevant.
  run_logged pip-download python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 -d "$WHEEL_DIR" "tensorflow-cpu==$TF_VERSION"
}

extract_libtensorflow() {
  if [[ -f "$LIBTF_DIR/lib/libtensorflow.so" ]]; then return 0; fi
  fetch_wheel
  local wheel tmp
  wheel="$(compgen -G "$WHEEL_DIR/tensorflow_cpu-$TF_VERSION-*.whl" | head -n 1)"
  tmp="$LIBTF_DIR.partial"
  rm -rf "$tmp"
  log "extracting libtensorflow from $(basename "$wheel")..."
  python3 - "$wheel" "$tmp" <<'PY' || die "could not extract libtensorflow from $wheel (corrupt download? delete it and re-run)."
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
libs = {'tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'}
# Only the headers the binding includes (C API, eager C API, tstring); the wheel's full include/ is 177 MB.
header_dirs = ('tensorflow/include/tensorflow/c/', 'tensorflow/include/tensorflow/core/platform/',
               'tensorflow/include/tsl/platform/', 'tensorflow/include/xla/tsl/c/')
with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    missing = sorted(libs - names)
    if missing:
        sys.exit(f'wheel has no {", ".join(missing)}: use a tensorflow-cpu version that ships libtensorflow_cc.so.2 (e.g. 2.18.1)')
    for name in names:
        if name in libs:
            target = os.path.join(out, 'lib', os.path.basename(name))
        elif name.startswith(header_dirs) and name.endswith('.h'):
            target = os.path.join(out, 'include', name[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(name) as src, open(target, 'wb') as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
  # The libraries carry a 170 MB static symbol table; the dynamic symbols the binding links to stay.
  strip --strip-unneeded "$tmp/lib/libtensorflow_cc.so.2" "$tmp/lib/libtensorflow_framework.so.2"
  # binding.gyp links -ltensorflow -ltensorflow_framework; libtensorflow_cc exports the whole TF_*/TFE_*
  # C API that libtensorflow.so used to, and its SONAME (libtensorflow_cc.so.2) is what gets recorded.
  ln -s libtensorflow_cc.so.2 "$tmp/lib/libtensorflow.so"
  ln -s libtensorflow_framework.so.2 "$tmp/lib/libtensorflow_framework.so"
  # The name tfjs-node's own install script checks for: should npm ever run that script (npm rebuild,
  # allowed install scripts), it then rebuilds the binding against this library instead of deleting
  # deps/ and trying to download libtensorflow 2.9.1.
  ln -s libtensorflow_cc.so.2 "$tmp/lib/libtensorflow.so.2.9.1"
  mv "$tmp" "$LIBTF_DIR"
  # The wheel is no longer needed (pip keeps its own HTTP cache); saves 230 MB in the cache folder.
  rm -f "$wheel"
}

# True when every @tensorflow package in the prefix is there (a shared one vanishes with the project's copy).
prefix_complete() {
  [[ -f "$TFJS_NODE_DIR/package.json" ]] || return 1
  cmp -s "$SCRIPT_DIR/prefix/package-lock.json" "$PREFIX_DIR/package-lock.json" || return 1
  local pkg
  for pkg in "$PREFIX_DIR"/node_modules/@tensorflow/*; do
    [[ -e "$pkg/package.json" ]] || return 1
  done
}

install_prefix() {
  if prefix_complete; then return 0; fi
  log "installing tfjs-node $TFJS_VERSION and its npm dependencies into $PREFIX_DIR (scripts off)..."
  mkdir -p "$PREFIX_DIR"
  cp "$SCRIPT_DIR/prefix/package.json" "$SCRIPT_DIR/prefix/package-lock.json" "$PREFIX_DIR/"
  # --ignore-scripts: tfjs-node's own install script would try to download from Google storage.
  run_logged npm-ci npm ci --prefix "$PREFIX_DIR" --ignore-scripts --no-audit --no-fund
}

# The prefix's TF.js packages are replaced by the project's own copies where the versions match, and
# tfjs-core must match: two copies would each register their backends' kernels (duplicate-kernel
# warnings) and give the project and tfjs-node separate module instances of the same package.
share_project_tfjs() {
  local in_prefix name project_copy version
  for in_prefix in "$PREFIX_DIR"/node_modules/@tensorflow/*; do
    name="$(basename "$in_prefix")"
    [[ "$name" != tfjs-node ]] || continue
    project_copy="$REPO_ROOT/node_modules/@tensorflow/$name"
    [[ "$(readlink "$in_prefix" 2>/dev/null)" != "$project_copy" ]] || continue
    version="$(node -p "try { require('$project_copy/package.json').version } catch { '' }")"
    if [[ "$version" == "$TFJS_VERSION" ]]; then
      rm -rf "$in_prefix"
      ln -s "$project_copy" "$in_prefix"
    elif [[ "$name" == tfjs-core ]]; then
      die "project's @tensorflow/tfjs-core is '${version:-missing}', tfjs-node $TFJS_VERSION needs $TFJS_VERSION; run 'npm install' / align versions."
    fi
  done
}

# Node headers for node-gyp: distro Node keeps them in <prefix>/include/node (/usr here); without them
# node-gyp would download headers from nodejs.org, which only works with internet access.
node_headers_dir() {
  local node_prefix
  node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [[ -f "$node_prefix/include/node/node_api.h" ]]; then
    printf '%s' "$node_prefix"
  fi
}

build_binding() {
  if [[ -f "$STAMP" ]]; then return 0; fi
  log "compiling the tfjs-node binding against TensorFlow $TF_VERSION..."
  rm -rf "$TFJS_NODE_DIR/deps" "$TFJS_NODE_DIR/build" "$TFJS_NODE_DIR/lib"
  mkdir -p "$TFJS_NODE_DIR/deps"
  ln -s "$LIBTF_DIR/lib" "$TFJS_NODE_DIR/deps/lib"
  ln -s "$LIBTF_DIR/include" "$TFJS_NODE_DIR/deps/include"
  # Build only the N-API variant that tfjs-node's loader (node-pre-gyp find) picks for this Node.
  local binding_path module_path nodedir node_gyp
  binding_path="$(cd "$TFJS_NODE_DIR" && node -p "require('@mapbox/node-pre-gyp').find(require('path').resolve('package.json'))")"
  module_path="$(dirname "$binding_path")"
  nodedir="$(node_headers_dir)"
  node_gyp="$PREFIX_DIR/node_modules/node-gyp/bin/node-gyp.js"
  local nodedir_arg=()
  if [[ -n "$nodedir" ]]; then nodedir_arg=(--nodedir="$nodedir"); fi
  (
    cd "$TFJS_NODE_DIR"
    run_logged node-gyp-configure node "$node_gyp" configure "${nodedir_arg[@]}" -- \
      -Dmodule_name=tfjs_binding -Dmodule_path="$module_path" -Dnapi_build_version="$(basename "$module_path" | sed 's/^napi-v//')"
    run_logged node-gyp-build node "$node_gyp" build --jobs "$(nproc)"
  )
  [[ -f "$binding_path" ]] || die "node-gyp finished but $binding_path was not produced; see $LOG_DIR/node-gyp-build.log."
  rm -rf "$TFJS_NODE_DIR/build"
  touch "$STAMP"
}

# Loads the package the way the project will and runs one op, so a broken library fails here, not in training.
verify() {
  local out
  if ! out="$(cd "$REPO_ROOT" && TF_CPP_MIN_LOG_LEVEL=2 node -e "
    const tf = require('$TFJS_NODE_DIR');
    const product = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0];
    if (tf.getBackend() !== 'tensorflow' || product !== 11) throw new Error('backend ' + tf.getBackend() + ' gave ' + product);
    console.log('backend tensorflow, TF ' + tf.backend().binding.TF_Version);
  " 2>&1)"; then
    printf '%s\n' "$out" | tail -n 15 >&2
    rm -f "$STAMP"
    die "the built tfjs-node does not load or compute correctly (output above); re-run $0 to rebuild, or delete $CACHE_DIR to start over."
  fi
  log "verified: $out"
}

# Earlier versions of this script linked the build into node_modules; that link breaks npm, so remove it.
unlink_from_project() {
  if [[ -L "$PROJECT_LINK" && "$(readlink "$PROJECT_LINK")" == "$TFJS_NODE_DIR" ]]; then
    rm -f "$PROJECT_LINK"
    log "removed the old link $PROJECT_LINK (the backend loader finds the build in $CACHE_DIR)"
  fi
}

started=$SECONDS
check_platform
extract_libtensorflow
install_prefix
share_project_tfjs
build_binding
verify
unlink_from_project
log "done in $((SECONDS - started)) s (cache: $CACHE_DIR)."
