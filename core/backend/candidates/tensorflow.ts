/**
 * Native TensorFlow through tfjs-node-gpu or tfjs-node: an npm-installed copy when one works (machines
 * with internet), else this project's link to the offline build of infra/tfjs-native/install.sh (CPU,
 * or CUDA where the machine has an NVIDIA driver). It runs on a GPU when its TensorFlow has CUDA and
 * sees one, else on the CPU; `auto` ranks the two differently (see candidate.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadPackage } from '../load-package';
import type { Candidate, Probe } from '../candidate';
import { firstVisibleGpu, listNvidiaGpus } from '../nvidia';
import { activate } from './activate';

/**
 * Where infra/tfjs-native/install.sh links this project's tfjs-node: inside the project, so that its
 * `require('@tensorflow/tfjs')` finds the project's own TF.js (one tfjs-core instance per process).
 */
export function nativeBuildPath(): string {
  return path.resolve(
    __dirname,
    ...['..', '..', '..', '.cache', 'tfjs-native-link', 'node_modules', '@tensorflow', 'tfjs-node'],
  );
}

/** 'cpu' or 'cuda': which TensorFlow wheel the offline build was made from (its link records it). */
function offlineVariant(): string | undefined {
  try {
    const ready = readFileSync(path.join(nativeBuildPath(), '..', '..', '..', '.ready'), 'utf8');
    return /\bvariant=(\w+)/.exec(ready)?.[1];
  } catch {
    return undefined;
  }
}

const SOURCES = [
  { name: 'tfjs-node-gpu', build: 'CUDA', load: () => loadPackage('@tensorflow/tfjs-node-gpu') },
  { name: 'tfjs-node', build: 'CPU', load: () => loadPackage('@tensorflow/tfjs-node') },
  {
    name: 'tfjs-node (offline build)',
    get build() {
      return offlineVariant() === 'cuda' ? 'CUDA' : 'CPU';
    },
    load: () => loadPackage(nativeBuildPath()),
  },
];

/**
 * Settings TensorFlow reads when it loads: GPU memory grows on demand (a sampling process and a trainer
 * can share a card; TF otherwise takes nearly all of it), and GPUs are numbered in PCI bus order, as
 * nvidia-smi and `--gpu i` number them (CUDA's own default is fastest first). Both only when unset.
 */
function prepareEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  env.TF_FORCE_GPU_ALLOW_GROWTH ??= 'true';
  env.CUDA_DEVICE_ORDER ??= 'PCI_BUS_ID';
}

export type NativeLoad = { ok: true; packageName: string; build: string } | { ok: false; reason: string };

/** The first source that loads; loading registers the 'tensorflow' backend. */
export function loadNative(): NativeLoad {
  prepareEnvironment();
  const reasons: string[] = [];
  for (const source of SOURCES) {
    const loaded = source.load();
    if (loaded.ok) return { ok: true, packageName: source.name, build: source.build };
    reasons.push(loaded.reason);
  }
  return {
    ok: false,
    reason: `${reasons.join('; ')} (infra/tfjs-native/install.sh builds it offline; start-run does on first use)`,
  };
}

interface NativeBinding {
  TF_Version: string;
  isUsingGpuDevice(): boolean;
}

/** What the loaded TensorFlow runs on: its device choice (GPU if it found one) and version. */
function nativeDevice(): { onGpu: boolean; version: string } {
  const backend = tf.findBackend('tensorflow') as unknown as { binding: NativeBinding } | null;
  if (!backend) throw new Error("tfjs-node loaded but registered no 'tensorflow' backend");
  return { onGpu: backend.binding.isUsingGpuDevice(), version: backend.binding.TF_Version };
}

/** E.g. 'GPU 0: NVIDIA H200' for the GPU this process's TensorFlow uses. */
function gpuName(): string {
  const gpu = firstVisibleGpu(listNvidiaGpus());
  return gpu ? `GPU ${gpu.index}: ${gpu.name}` : `GPU ${process.env.CUDA_VISIBLE_DEVICES ?? '0'}`;
}

export const tensorflowCandidate: Candidate = {
  name: 'tensorflow',
  async probe(): Promise<Probe> {
    const native = loadNative();
    if (!native.ok) return native;
    const { onGpu, version } = nativeDevice();
    return {
      ok: true,
      onGpu,
      ...(!onGpu && { cpuOnlyBecause: `TensorFlow ${version} (${native.build} build) sees no GPU` }),
    };
  },
  async start() {
    const native = loadNative();
    if (!native.ok) throw new Error(native.reason);
    await activate('tensorflow');
    const { onGpu, version } = nativeDevice();
    const gpu = onGpu ? gpuName() : undefined;
    return {
      name: 'tensorflow',
      detail: `${native.packageName}, TF ${version} ${native.build} build, on ${gpu ?? 'CPU'}`,
      ...(gpu && { gpu }),
    };
  },
};
