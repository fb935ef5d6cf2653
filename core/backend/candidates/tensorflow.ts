/**
 * Native TensorFlow through tfjs-node-gpu (CUDA) or tfjs-node (CPU): an npm-installed copy when one works
 * (machines with internet), else the offline build of infra/tfjs-native/install.sh in .cache/.
 */
import path from 'node:path';
import { loadPackage } from '../load-package';
import type { Candidate } from '../candidate';
import { activate } from './activate';

/** Where infra/tfjs-native/install.sh leaves its tfjs-node build (TFJS_NATIVE_CACHE moves it). */
export function nativeBuildPath(): string {
  const cache =
    process.env.TFJS_NATIVE_CACHE ?? path.resolve(__dirname, '..', '..', '..', '.cache', 'tfjs-native');
  return path.join(cache, 'node-prefix', 'node_modules', '@tensorflow', 'tfjs-node');
}

const SOURCES = [
  { name: '@tensorflow/tfjs-node-gpu', load: () => loadPackage('@tensorflow/tfjs-node-gpu') },
  { name: '@tensorflow/tfjs-node', load: () => loadPackage('@tensorflow/tfjs-node') },
  { name: 'tfjs-node (offline build)', load: () => loadPackage(nativeBuildPath()) },
];

/** The loaded tfjs-node module (for its `node` namespace: summary writers, SavedModel), or null. */
export function nativeModule(): { node: unknown } | null {
  for (const source of SOURCES) {
    const loaded = source.load();
    if (loaded.ok) return loaded.module as { node: unknown };
  }
  return null;
}

/** The first source that loads; loading registers the 'tensorflow' backend. */
export function loadNative(): { ok: true; packageName: string } | { ok: false; reason: string } {
  const reasons: string[] = [];
  for (const source of SOURCES) {
    const loaded = source.load();
    if (loaded.ok) return { ok: true, packageName: source.name };
    reasons.push(loaded.reason);
  }
  return { ok: false, reason: `${reasons.join('; ')} (infra/tfjs-native/install.sh builds it offline)` };
}

export const tensorflowCandidate: Candidate = {
  name: 'tensorflow',
  async probe() {
    const native = loadNative();
    return native.ok ? { ok: true } : native;
  },
  async start() {
    const native = loadNative();
    if (!native.ok) throw new Error(native.reason);
    await activate('tensorflow');
    return { name: 'tensorflow', detail: native.packageName.replace('@tensorflow/', '') };
  },
};
