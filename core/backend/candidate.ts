/** What selection needs from each backend: whether it can run here, and how to make it the active one. */

import { BACKEND_NAMES, type BackendName } from './names';

export { isBackendName, type BackendName } from './names';

export interface BackendInfo {
  name: BackendName;
  /** What exactly runs, e.g. 'tfjs-node, TF 2.18.1 CUDA build, on GPU 0: NVIDIA H200', 'wasm SIMD, 1 thread'. */
  detail: string;
  /** The GPU it computes on, when it does (e.g. 'GPU 0: NVIDIA H200'). */
  gpu?: string;
}

/** The backends, fastest first (listings and error messages). */
export const PREFERENCE_ORDER: readonly BackendName[] = BACKEND_NAMES;

/** One rung of 'auto': a backend, optionally only when it runs on a GPU / only on the CPU. */
export interface AutoRung {
  name: BackendName;
  device?: 'gpu' | 'cpu';
}

/**
 * What 'auto' tries, fastest first: native TensorFlow on a GPU (CUDA kernels, cuDNN), then WebGPU on a
 * hardware adapter, then native TensorFlow on the CPU (oneDNN, all cores), then wasm (one core), and the
 * plain JavaScript backend as the last resort.
 */
export const AUTO_ORDER: readonly AutoRung[] = [
  { name: 'tensorflow', device: 'gpu' },
  { name: 'webgpu' },
  { name: 'tensorflow', device: 'cpu' },
  { name: 'wasm' },
  { name: 'cpu' },
];

/**
 * A probe's answer. `onGpu` says where a backend that can run on either would compute; `cpuOnlyBecause`
 * says why not on a GPU (for the log line of 'auto').
 */
export type Probe = { ok: true; onGpu?: boolean; cpuOnlyBecause?: string } | { ok: false; reason: string };

export interface Candidate {
  name: BackendName;
  /**
   * Whether the backend can run here, without switching to it. `explicit` is true when the user asked
   * for this backend by name (auto-selection may be pickier, e.g. skip a software GPU adapter).
   */
  probe(explicit: boolean): Promise<Probe>;
  /** Makes it TF.js's active backend (after a successful probe); throws with a one-line reason. */
  start(): Promise<BackendInfo>;
}
