import * as tf from '@tensorflow/tfjs-core';

export interface KernelProfile {
  /** TF.js kernel launches (tf.profile's count: one per backend kernel call). */
  kernels: number;
  /** The most frequent kernels: name, launches, summed kernel time in ms where the backend reports it. */
  top: { name: string; count: number; ms: number }[];
}

/**
 * Counts the kernels `work` runs. Each launch costs a fixed dispatch time on every backend (and a GPU
 * round of scheduling on webgpu), so the count is what "fewer, bigger kernels" is measured by. The
 * per-kernel timing of tf.profile adds syncs, so time the work elsewhere.
 */
export async function profileKernels(work: () => Promise<unknown>, topN = 12): Promise<KernelProfile> {
  const info = await tf.profile(async () => {
    await work();
  });
  const backend = tf.getBackend();
  // tf.profile also lists each custom-gradient op (tf.customGrad) as an entry of its own, around the
  // kernels it runs: only registered kernels are launches.
  const launches = info.kernels.filter((k) => tf.getKernel(k.name, backend) !== undefined);
  const byName = new Map<string, { count: number; ms: number }>();
  for (const k of launches) {
    const entry = byName.get(k.name) ?? { count: 0, ms: 0 };
    entry.count++;
    if (typeof k.kernelTimeMs === 'number') entry.ms += k.kernelTimeMs;
    byName.set(k.name, entry);
  }
  const top = [...byName.entries()]
    .map(([name, e]) => ({ name, count: e.count, ms: Number(e.ms.toFixed(1)) }))
    .sort((a, b) => b.count - a.count)
    .slice(0, topN);
  return { kernels: launches.length, top };
}
