/** The TF.js WebGPU backend on a real GPU, through Dawn's Node binding (Vulkan on Linux). */
import { loadPackage } from '../load-package';
import type { Candidate } from '../candidate';
import { activate } from './activate';
import { describeAdapter, findAdapter, isSoftwareAdapter } from './dawn';

export const webgpuCandidate: Candidate = {
  name: 'webgpu',
  async probe(explicit) {
    const found = await findAdapter();
    if (!found.ok) return found;
    if (!explicit && isSoftwareAdapter(found.adapter)) {
      return { ok: false, reason: `only a software adapter (${describeAdapter(found.adapter)})` };
    }
    // Loaded only now: the package registers its backend at load time, and only if navigator.gpu exists.
    const loaded = loadPackage('@tensorflow/tfjs-backend-webgpu');
    return loaded.ok ? { ok: true } : loaded;
  },
  async start() {
    const found = await findAdapter();
    if (!found.ok) throw new Error(found.reason);
    const loaded = loadPackage('@tensorflow/tfjs-backend-webgpu');
    if (!loaded.ok) throw new Error(loaded.reason);
    await activate('webgpu');
    return { name: 'webgpu', detail: describeAdapter(found.adapter) };
  },
};
