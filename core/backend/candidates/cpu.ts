/** The plain JavaScript backend: always there, but only fit as a correctness reference for training. */
import { loadPackage } from '../load-package';
import type { Candidate } from '../candidate';
import { activate } from './activate';

export const cpuCandidate: Candidate = {
  name: 'cpu',
  async probe() {
    const loaded = loadPackage('@tensorflow/tfjs-backend-cpu');
    return loaded.ok ? { ok: true } : loaded;
  },
  async start() {
    const loaded = loadPackage('@tensorflow/tfjs-backend-cpu');
    if (!loaded.ok) throw new Error(loaded.reason);
    await activate('cpu');
    return { name: 'cpu', detail: 'tfjs-backend-cpu (plain JavaScript)' };
  },
};
