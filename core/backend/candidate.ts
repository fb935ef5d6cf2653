/** What selection needs from each backend: whether it can run here, and how to make it the active one. */

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

export interface BackendInfo {
  name: BackendName;
  /** What exactly runs, e.g. 'tfjs-node-gpu', 'wasm SIMD, 1 thread', a GPU adapter's name. */
  detail: string;
}

/** Fastest first: 'auto' takes the first one that starts. */
export const PREFERENCE_ORDER: readonly BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

export function isBackendName(name: string): name is BackendName {
  return (PREFERENCE_ORDER as readonly string[]).includes(name);
}

export type Probe = { ok: true } | { ok: false; reason: string };

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
