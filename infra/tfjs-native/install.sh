#!/usr/bin/env bash
# Installs the native TensorFlow backend for TF.js (@tensorflow/tfjs-node) without Google storage, whose
# libtensorflow download these machines cannot reach: libtensorflow comes from a PyPI wheel instead, and
# tfjs-node's N-API binding is compiled against it. On a machine with an NVIDIA driver (CUDA 12 capable)
# it installs the CUDA-enabled `tensorflow` wheel with the nvidia-*-cu12 libraries of its `and-cuda`
# extra; otherwise the `tensorflow-cpu` wheel. See infra/tfjs-native/README.md (sizes, layout, settings).
#
#   infra/tfjs-native/install.sh [--cpu | --cuda] [--if-needed] [--print-variant]
#
#   --cpu, --cuda      force a build (also TFJS_NATIVE_VARIANT=cpu|cuda|auto; default auto)
#   --if-needed        return at once, silently, when this project is already set up (start-run's check)
#   --print-variant    print which build would be installed here and why, and stop
#
# The shared cache ($TFJS_NATIVE_CACHE, default ~/.cache/ddpm-temporal/tfjs-native) holds what is
# expensive and project-independent: libtensorflow-<tf>-<variant>/ and tfjs-node-<v>-tf<tf>-<variant>/
# (tfjs-node's npm dependencies and the compiled binding, without any TF.js package). Each project gets
# its own small .cache/tfjs-native-link/ (a copy of tfjs-node's JavaScript and binding, ~4 MB, the rest
# symlinked), so that tfjs-node resolves @tensorflow/tfjs-core from the project that loads it: any number
# of clones share one cache and each loads exactly one tfjs-core. Every cache entry is built in a
# temporary folder and renamed into place when complete, under a lock; a killed or failed install
# leaves nothing that a later run trusts, and finished downloads are kept for the next attempt.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=infra/install-lib.sh
source "$REPO_ROOT/infra/install-lib.sh"
LOG_TAG=tfjs-native
SCRIPT_DIR="$REPO_ROOT/infra/tfjs-native"
CACHE_DIR="${TFJS_NATIVE_CACHE:-$(default_cache_root)/tfjs-native}"
LOG_DIR="$CACHE_DIR/logs"
# Verified: 2.18.1 (CPU and CUDA) and 2.20.0 (CPU). Needs a wheel with libtensorflow_cc.so.2.
TF_VERSION="${TFJS_NATIVE_TF_VERSION:-2.18.1}"
TFJS_VERSION="4.22.0"
# The oldest Linux driver that runs CUDA 12.x applications (CUDA's minor-version compatibility).
MIN_CUDA12_DRIVER="525.60.13"
# Free space an install needs (downloads + unpacked + strip's temporary copy), MB.
NEED_MB_cpu=1600
NEED_MB_cuda=7500
LINK_DIR="$REPO_ROOT/.cache/tfjs-native-link"

REQUEST="${TFJS_NATIVE_VARIANT:-auto}"
IF_NEEDED=0
PRINT_VARIANT=0
for arg in "$@"; do
  case "$arg" in
    --cpu) REQUEST=cpu ;;
    --cuda) REQUEST=cuda ;;
    --if-needed) IF_NEEDED=1 ;;
    --print-variant) PRINT_VARIANT=1 ;;
    -h | --help)
      sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$arg' (expected --cpu, --cuda, --if-needed, --print-variant)" ;;
  esac
done
case "$REQUEST" in
  auto | cpu | cuda) ;;
  *) die "TFJS_NATIVE_VARIANT must be auto, cpu or cuda, not '$REQUEST'" ;;
esac

# --- which build ------------------------------------------------------------------------------------

# The NVIDIA driver's version, or nothing without a driver. TFJS_NATIVE_NVIDIA_VERSION_FILE names the
# file to read instead of /proc/driver/nvidia/version (and then nvidia-smi is not asked).
nvidia_driver_version() {
  local file="${TFJS_NATIVE_NVIDIA_VERSION_FILE:-/proc/driver/nvidia/version}"
  if [[ -r "$file" ]]; then
    # "NVRM version: NVIDIA UNIX [Open Kernel Module for] x86_64 Kernel Module  550.54.14  <date>"
    grep -m1 -oE '[0-9]{3,}\.[0-9]+(\.[0-9]+)?' "$file" | head -n 1 || true
    return 0
  fi
  [[ -z "${TFJS_NATIVE_NVIDIA_VERSION_FILE:-}" ]] || return 0
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ' || true
  fi
}

version_at_least() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$2" ]]; }

# Sets VARIANT (cpu|cuda) and WHY; stops when --cuda cannot work here.
select_variant() {
  local driver
  driver="$(nvidia_driver_version)"
  DRIVER="$driver"
  case "$REQUEST" in
    cpu) VARIANT=cpu WHY="CPU build requested${driver:+ (NVIDIA driver $driver present)}" ;;
    cuda)
      # Without a driver the CUDA build still runs, on the CPU (preparing a machine image, or CI checking
      # that fallback); with a driver too old for CUDA 12 the user's GPU would sit idle, so that stops.
      if [[ -z "$driver" ]]; then
        VARIANT=cuda WHY="CUDA build requested; no NVIDIA driver found, so it runs on the CPU until one is installed"
      else
        version_at_least "$driver" "$MIN_CUDA12_DRIVER" ||
          die "--cuda: NVIDIA driver $driver is too old for CUDA 12 (needs >= $MIN_CUDA12_DRIVER); update the driver, or use --cpu."
        VARIANT=cuda WHY="CUDA build requested (NVIDIA driver $driver)"
      fi
      ;;
    auto)
      if [[ -z "$driver" ]]; then
        VARIANT=cpu WHY="no NVIDIA driver found"
      elif version_at_least "$driver" "$MIN_CUDA12_DRIVER"; then
        VARIANT=cuda WHY="NVIDIA driver $driver found"
      else
        VARIANT=cpu WHY="NVIDIA driver $driver is too old for CUDA 12 (needs >= $MIN_CUDA12_DRIVER), so the GPU stays unused: update the driver to train on it"
      fi
      ;;
  esac
}

select_variant
if ((PRINT_VARIANT)); then
  printf '%s: %s\n' "$VARIANT" "$WHY"
  exit 0
fi

LIBTF_DIR="$CACHE_DIR/libtensorflow-$TF_VERSION-$VARIANT"
BUILD_DIR="$CACHE_DIR/tfjs-node-$TFJS_VERSION-tf$TF_VERSION-$VARIANT"
WHEEL_DIR="$CACHE_DIR/wheels/tensorflow-$TF_VERSION-$VARIANT"
TFJS_NODE_REL="node_modules/@tensorflow/tfjs-node"
# What this project's link records; a link recording anything else is rebuilt.
READY="variant=$VARIANT tensorflow=$TF_VERSION tfjs-node=$TFJS_VERSION build=$BUILD_DIR libtensorflow=$LIBTF_DIR"

if ((IF_NEEDED)) && [[ -f "$LIBTF_DIR/.complete" && -f "$BUILD_DIR/.complete" &&
  "$(cat "$LINK_DIR/.ready" 2>/dev/null)" == "$READY" ]]; then
  exit 0
fi

# --- checks -----------------------------------------------------------------------------------------

check_platform() {
  [[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]] ||
    die "only Linux x86_64 is supported (found $(uname -s) $(uname -m)); elsewhere install @tensorflow/tfjs-node from npm normally."
  # PyPI TensorFlow wheels are compiled with AVX; without it the library dies with SIGILL on load.
  grep -qw avx /proc/cpuinfo || die "this CPU lacks AVX, which PyPI's TensorFlow wheels require."
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

# --- libtensorflow from PyPI ----------------------------------------------------------------------

# Progress of the wheel pip is downloading (into $CACHE_DIR/tmp).
download_progress() { printf '%s MB downloaded' "$(du -sm "$CACHE_DIR/tmp" 2>/dev/null | cut -f1)"; }

# pip download of one pinned wheel (no dependencies) into $WHEEL_DIR, unless it is there from an earlier,
# interrupted attempt: pip saves a file only when all of a command's downloads are done, so one command
# per wheel is what lets a failed download resume with the wheels still missing. Args: step, requirement.
pip_download() {
  local step="$1" requirement="$2"
  local name="${requirement%%==*}" version="${requirement#*==}"
  if compgen -G "$WHEEL_DIR/${name//-/_}-$version-*.whl" >/dev/null; then return 0; fi
  rm -rf "$CACHE_DIR/tmp"
  mkdir -p "$WHEEL_DIR" "$CACHE_DIR/tmp"
  # Only the .so files are used, so the Python tag does not matter. --no-cache-dir: $WHEEL_DIR is the
  # cache; pip's own would hold a second copy of gigabytes of CUDA wheels.
  run_step "$step" "downloading $requirement from PyPI" download_progress \
    env TMPDIR="$CACHE_DIR/tmp" python3 -m pip download --no-deps --only-binary=:all: --no-cache-dir \
    --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 -d "$WHEEL_DIR" "$requirement"
}

tf_wheel() { compgen -G "$WHEEL_DIR/tensorflow*-$TF_VERSION-*.whl" | head -n 1; }

# The CUDA libraries the wheel's `and-cuda` extra names, pinned as it pins them. nvcc (ptxas for XLA)
# and curand are left out: TF.js's eager ops never load them (saves ~0.5 GB).
cuda_requirements() {
  python3 - "$1" <<'PY'
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    meta = next(n for n in zf.namelist() if n.endswith('.dist-info/METADATA'))
    for line in zf.read(meta).decode().splitlines():
        m = re.match(r'Requires-Dist: (nvidia-[a-z0-9-]+) ?\(?(==[^;) ]+)\)? ?;.*extra == .and-cuda.', line)
        if m and m.group(1) not in ('nvidia-cuda-nvcc-cu12', 'nvidia-curand-cu12'):
            print(m.group(1) + m.group(2))
PY
}

fetch_wheels() {
  local tf_package=tensorflow-cpu
  if [[ "$VARIANT" == cuda ]]; then tf_package=tensorflow; fi
  pip_download pip-download-tensorflow "$tf_package==$TF_VERSION"
  [[ "$VARIANT" == cuda ]] || return 0
  local reqs req n=0
  reqs="$(cuda_requirements "$(tf_wheel)")"
  [[ -n "$reqs" ]] || die "tensorflow $TF_VERSION names no nvidia-*-cu12 libraries in its and-cuda extra; use a CUDA-enabled version (e.g. 2.18.1)."
  for req in $reqs; do
    n=$((n + 1))
    pip_download "pip-download-cuda-$n" "$req"
  done
}

# Unpacks what tfjs-node needs from the wheels into a partial folder ($1): the two TF libraries, the C
# API headers, and (CUDA) each nvidia/<pkg>/lib with the layout the TF libraries' RUNPATHs expect.
unpack_wheels() {
  python3 - "$1" "$WHEEL_DIR"/*.whl <<'PY'
import os, sys, zipfile
out, wheels = sys.argv[1], sys.argv[2:]
libs = {'tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'}
# Only the headers the binding includes (C API, eager C API, tstring); the wheel's full include/ is 177 MB.
header_dirs = ('tensorflow/include/tensorflow/c/', 'tensorflow/include/tensorflow/core/platform/',
               'tensorflow/include/tsl/platform/', 'tensorflow/include/xla/tsl/c/')

def copy(zf, name, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with zf.open(name) as src, open(target, 'wb') as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    if zf.getinfo(name).external_attr >> 16 & 0o111:
        os.chmod(target, 0o755)

for wheel in wheels:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        if os.path.basename(wheel).startswith('tensorflow'):
            missing = sorted(libs - set(names))
            if missing:
                sys.exit(f'{os.path.basename(wheel)} has no {", ".join(missing)}: use a version that ships libtensorflow_cc.so.2 (e.g. 2.18.1)')
            for name in names:
                if name in libs:
                    copy(zf, name, os.path.join(out, 'lib', os.path.basename(name)))
                elif name.startswith(header_dirs) and name.endswith('.h'):
                    copy(zf, name, os.path.join(out, 'include', name[len('tensorflow/include/'):]))
        else:
            for name in names:
                parts = name.split('/')
                if len(parts) == 4 and parts[0] == 'nvidia' and parts[2] == 'lib' and '.so' in parts[3]:
                    copy(zf, name, os.path.join(out, name))
PY
}

# TF 2.20+'s framework library lacks $ORIGIN/ and nvidia/cusolver/lib in its RUNPATH, and names
# nvidia/nvrtc where the wheel has cuda_nvrtc: every CUDA library also gets a link in
# nvidia/cuda_runtime/lib, which every version's RUNPATH names. Harmless for 2.18.
alias_cuda_libraries() {
  local nvidia="$1/nvidia" lib
  [[ -d "$nvidia/cuda_runtime/lib" ]] || return 0
  for lib in "$nvidia"/*/lib/*.so*; do
    [[ "$(dirname "$lib")" != "$nvidia/cuda_runtime/lib" ]] || continue
    [[ -e "$nvidia/cuda_runtime/lib/$(basename "$lib")" ]] ||
      ln -s "../../$(basename "$(dirname "$(dirname "$lib")")")/lib/$(basename "$lib")" "$nvidia/cuda_runtime/lib/"
  done
  if [[ -d "$nvidia/cuda_nvrtc" && ! -e "$nvidia/nvrtc" ]]; then ln -s cuda_nvrtc "$nvidia/nvrtc"; fi
}

unpack_progress() { printf '%s MB unpacked' "$(du -sm "$LIBTF_DIR.partial" 2>/dev/null | cut -f1)"; }

# Builds $LIBTF_DIR in a partial folder and renames it into place with its .complete stamp inside.
install_libtensorflow() {
  if [[ -f "$LIBTF_DIR/.complete" ]]; then return 0; fi
  local tmp="$LIBTF_DIR.partial" old="$CACHE_DIR/libtensorflow-$TF_VERSION"
  rm -rf "$tmp"
  # Caches made before the variants existed hold the CPU build as libtensorflow-<tf>/: hard links
  # reuse it without a download (and leave it as it was for projects that still use it).
  if [[ "$VARIANT" == cpu && -f "$old/lib/libtensorflow_cc.so.2" && -d "$old/include" ]]; then
    cp -al "$old" "$tmp"
  else
    # Wheels already downloaded by an earlier, interrupted attempt count as space already taken.
    local need_var="NEED_MB_$VARIANT" have_mb=0 what=libtensorflow
    if [[ -d "$WHEEL_DIR" ]]; then have_mb="$(du -sm "$WHEEL_DIR" | cut -f1)"; fi
    require_free_space "$CACHE_DIR" $((${!need_var} - have_mb)) "the $VARIANT build of TensorFlow $TF_VERSION"
    fetch_wheels
    mkdir -p "$tmp"
    if [[ "$VARIANT" == cuda ]]; then what="libtensorflow and the CUDA libraries"; fi
    run_step unpack "unpacking $what" unpack_progress unpack_wheels "$tmp"
    # The libraries carry a large static symbol table (170 MB for the CPU build); the dynamic symbols
    # the binding links to stay.
    run_step strip "stripping the TensorFlow libraries' static symbols" '' \
      strip --strip-unneeded "$tmp/lib/libtensorflow_cc.so.2" "$tmp/lib/libtensorflow_framework.so.2"
    # binding.gyp links -ltensorflow -ltensorflow_framework; libtensorflow_cc exports the whole TF_*/TFE_*
    # C API that libtensorflow.so used to, and its SONAME (libtensorflow_cc.so.2) is what gets recorded.
    ln -s libtensorflow_cc.so.2 "$tmp/lib/libtensorflow.so"
    ln -s libtensorflow_framework.so.2 "$tmp/lib/libtensorflow_framework.so"
    # The name tfjs-node's own install script checks for: should npm ever run that script, it then
    # rebuilds against this library instead of downloading libtensorflow 2.9.1.
    ln -s libtensorflow_cc.so.2 "$tmp/lib/libtensorflow.so.2.9.1"
    if [[ "$VARIANT" == cuda ]]; then alias_cuda_libraries "$tmp"; fi
  fi
  write_atomically "$tmp/.complete" "tensorflow $TF_VERSION $VARIANT"
  mv "$tmp" "$LIBTF_DIR"
  # The unpacked libraries are the cache; the wheels (0.2 GB, CUDA 2.4 GB) are no longer needed.
  rm -rf "$WHEEL_DIR" "$CACHE_DIR/tmp"
}

# --- tfjs-node: npm dependencies and the compiled binding ---------------------------------------------

# Node headers for node-gyp: distro Node keeps them in <prefix>/include/node (/usr here); without them
# node-gyp would download headers from nodejs.org, which only works with internet access.
node_headers_dir() {
  local node_prefix
  node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [[ -f "$node_prefix/include/node/node_api.h" ]]; then
    printf '%s' "$node_prefix"
  fi
}

compile_binding() {
  local dir="$1"
  local binding_path module_path nodedir node_gyp
  # Build only the N-API variant that tfjs-node's loader (node-pre-gyp find) picks for this Node.
  binding_path="$(cd "$dir" && node -p "require('@mapbox/node-pre-gyp').find(require('path').resolve('package.json'))")"
  module_path="$(dirname "$binding_path")"
  nodedir="$(node_headers_dir)"
  node_gyp="$BUILD_DIR.partial/node_modules/node-gyp/bin/node-gyp.js"
  local nodedir_arg=()
  if [[ -n "$nodedir" ]]; then nodedir_arg=(--nodedir="$nodedir"); fi
  (
    cd "$dir"
    node "$node_gyp" configure "${nodedir_arg[@]}" -- -Dmodule_name=tfjs_binding -Dmodule_path="$module_path" \
      -Dnapi_build_version="$(basename "$module_path" | sed 's/^napi-v//')"
    node "$node_gyp" build --jobs "$(nproc)"
  )
  [[ -f "$binding_path" ]] || {
    echo "node-gyp finished but $binding_path was not produced" >&2
    return 1
  }
  rm -rf "$dir/build"
}

install_tfjs_node() {
  if [[ -f "$BUILD_DIR/.complete" ]]; then return 0; fi
  local tmp="$BUILD_DIR.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp "$SCRIPT_DIR/prefix/package.json" "$SCRIPT_DIR/prefix/package-lock.json" "$tmp/"
  # --ignore-scripts: tfjs-node's own install script would try to download from Google storage.
  run_step npm-ci "installing tfjs-node $TFJS_VERSION's npm dependencies (scripts off)" '' \
    npm ci --prefix "$tmp" --ignore-scripts --no-audit --no-fund
  # No TF.js package stays in the shared cache: tfjs-node must find the project's own (see the top).
  local pkg
  for pkg in "$tmp"/node_modules/@tensorflow/*; do
    [[ "$(basename "$pkg")" == tfjs-node ]] || rm -rf "$pkg"
  done
  local tfjs_node="$tmp/$TFJS_NODE_REL"
  rm -rf "$tfjs_node/deps" "$tfjs_node/build" "$tfjs_node/lib"
  mkdir -p "$tfjs_node/deps"
  ln -s "$LIBTF_DIR/lib" "$tfjs_node/deps/lib"
  ln -s "$LIBTF_DIR/include" "$tfjs_node/deps/include"
  run_step node-gyp "compiling the tfjs-node binding against TensorFlow $TF_VERSION ($VARIANT)" '' \
    compile_binding "$tfjs_node"
  write_atomically "$tmp/.complete" "tfjs-node $TFJS_VERSION against $LIBTF_DIR"
  mv "$tmp" "$BUILD_DIR"
}

# --- this project's link ----------------------------------------------------------------------------

# Builds the project's link in a partial folder ($1): tfjs-node's package copied (its JavaScript must
# live under this project for `require('@tensorflow/tfjs')` to reach the project's node_modules), its
# deps/ linked to the shared libtensorflow, and its other npm dependencies linked to the shared build.
make_link() {
  local tmp="$1" entry
  rm -rf "$tmp"
  mkdir -p "$tmp/node_modules/@tensorflow/tfjs-node"
  for entry in "$BUILD_DIR"/node_modules/*; do
    [[ "$(basename "$entry")" == @tensorflow ]] || ln -s "$entry" "$tmp/node_modules/"
  done
  (cd "$BUILD_DIR/$TFJS_NODE_REL" && tar cf - --exclude=./deps --exclude=./src --exclude=./binding .) |
    (cd "$tmp/$TFJS_NODE_REL" && tar xf -)
  # The binding's RUNPATH is $ORIGIN/../../deps/lib; the TF libraries find nvidia/ next to lib/.
  ln -s "$LIBTF_DIR" "$tmp/$TFJS_NODE_REL/deps"
}

# Loads tfjs-node the way the project does and runs one op. Fails unless the backend computes, and
# unless tfjs-node shares the project's tfjs-core instance. Prints one line: TF version and device.
verify() {
  local dir="$1/$TFJS_NODE_REL"
  # TensorFlow's own log lines (stderr) are kept for a failure; stdout is the one-line result.
  (cd "$REPO_ROOT" && TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" TF_FORCE_GPU_ALLOW_GROWTH=true node -e "
    const dir = process.argv[1];
    require(dir);
    const fromNode = require.resolve('@tensorflow/tfjs-core', { paths: [dir] });
    const fromProject = require.resolve('@tensorflow/tfjs-core', { paths: [process.cwd()] });
    if (fromNode !== fromProject) throw new Error('tfjs-node resolves ' + fromNode + ', not the project\\'s ' + fromProject);
    const tf = require(fromProject);
    tf.setBackend('tensorflow').then(() => {
      const product = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0];
      if (tf.getBackend() !== 'tensorflow' || product !== 11) throw new Error('backend ' + tf.getBackend() + ' gave ' + product);
      const binding = tf.backend().binding;
      console.log('TF ' + binding.TF_Version + ', ' + (binding.isUsingGpuDevice() ? 'on GPU' : 'on CPU'));
    }).catch((e) => { console.error(e); process.exit(1); });
  " "$dir" 2>"$LOG_DIR/verify.log")
}

link_into_project() {
  take_lock "$REPO_ROOT/.cache/tfjs-native-link.lock"
  local target="$LINK_DIR"
  if [[ "$(cat "$LINK_DIR/.ready" 2>/dev/null)" != "$READY" ]]; then
    target="$LINK_DIR.partial"
    make_link "$target"
  fi
  local out
  mkdir -p "$LOG_DIR"
  rm -f "$LOG_DIR/verify.log"
  if ! out="$(verify "$target")"; then
    { printf '%s\n' "$out"; tail -n 15 "$LOG_DIR/verify.log"; } >&2
    rm -f "$LINK_DIR/.ready"
    # Other clones may use the shared build, so it is left for the user to judge and delete.
    die "the built tfjs-node does not load or compute correctly (output above); delete $BUILD_DIR (and $LIBTF_DIR to start over) and re-run $0."
  fi
  if [[ "$target" != "$LINK_DIR" ]]; then
    write_atomically "$target/.ready" "$READY"
    rm -rf "$LINK_DIR.old"
    if [[ -e "$LINK_DIR" ]]; then mv "$LINK_DIR" "$LINK_DIR.old"; fi
    mv "$target" "$LINK_DIR"
    rm -rf "$LINK_DIR.old"
  fi
  local gpu_note=""
  if [[ "$VARIANT" == cuda && "$out" == *"on CPU"* ]]; then
    gpu_note=" (the CUDA build sees no GPU: run with TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's reason)"
  fi
  log "verified: $out$gpu_note"
}

# Versions of this script before the shared-cache layout linked the build into node_modules (which breaks
# later npm installs) or into a cache folder named node-prefix; the former link is removed here.
unlink_old_layout() {
  local old="$REPO_ROOT/node_modules/@tensorflow/tfjs-node"
  if [[ -L "$old" && "$(readlink "$old")" == "$CACHE_DIR"/* ]]; then rm -f "$old"; fi
}

started=$SECONDS
log "$VARIANT build of TensorFlow $TF_VERSION: $WHY (cache: $CACHE_DIR)"
check_platform
take_lock "$CACHE_DIR/.install.lock"
install_libtensorflow
install_tfjs_node
link_into_project
unlink_old_layout
log "done in $(elapsed $((SECONDS - started)))."
