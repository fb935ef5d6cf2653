/**
 * How a sample set of `count` images is cut into chunks that the trainer pool samples independently.
 * Pure arithmetic, free of TF.js and Node, so workflow code can plan with it.
 *
 * Chunks are whole batches: batch k always holds images [k * batch, (k + 1) * batch), however the set is
 * split. A sample's noise depends only on (seed, its global index), and on backends whose kernels round
 * the same whatever the batch (wasm, cpu) nothing else matters; on the native TensorFlow backend a
 * convolution's rounding depends on the batch shape, so keeping batches whole is what makes a split set
 * equal, bit for bit, to one sampled in a single process.
 */

export interface ChunkPlan {
  /** Global index of the chunk's first image. */
  first: number;
  count: number;
}

/** Above this many chunks, chunks grow (by whole batches) instead: each chunk costs a checkpoint load. */
export const MAX_CHUNKS = 64;

export function planChunks(count: number, batch: number, chunkImages?: number): ChunkPlan[] {
  for (const [name, v] of [
    ['count', count],
    ['batch', batch],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a whole number >= 1, got ${v}`);
  }
  const batches = Math.ceil(count / batch);
  let perChunk: number;
  if (chunkImages === undefined) {
    perChunk = Math.ceil(batches / MAX_CHUNKS) * batch;
  } else {
    if (!Number.isInteger(chunkImages) || chunkImages < 1 || chunkImages % batch !== 0) {
      throw new RangeError(`chunk size must be a whole multiple of the batch (${batch}), got ${chunkImages}`);
    }
    perChunk = chunkImages;
  }
  const plan: ChunkPlan[] = [];
  for (let first = 0; first < count; first += perChunk)
    plan.push({ first, count: Math.min(perChunk, count - first) });
  return plan;
}
