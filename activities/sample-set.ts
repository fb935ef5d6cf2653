import { finishSampleSet, sampleSetKey, SampleSetSpec } from '../core/sampling';
import { sampleSetKeys } from '../core/store-layout';
import type { FinishSampleSetInput, SampleImagesResult } from '../workflows/sampling-api';
import { storeFor } from './runtime';
import { asActivityFailure } from './failures';

/**
 * Commits a sample set whose chunks are all written: its grid and manifest, chunks in index order.
 * Needs no checkpoint: the chunk records carry the resolved sampler, the results the image shape.
 */
export async function finishSampleImages(input: FinishSampleSetInput): Promise<SampleImagesResult> {
  const r = input.request;
  try {
    const spec: SampleSetSpec = {
      runId: r.runId,
      step: r.step,
      sampler: input.chunks[0].sampler,
      seed: r.seed,
      count: r.count,
      batch: r.batch,
    };
    const m = await finishSampleSet(storeFor(r.storeUri), spec, input.shape, input.preset, input.chunks);
    const setKey = sampleSetKey(spec);
    return {
      setKey,
      manifestKey: sampleSetKeys.manifest(setKey),
      gridKey: m.grid,
      step: r.step,
      count: r.count,
      chunks: input.chunks.length,
      reusedChunks: 0,
      backends: [...new Set(input.chunks.map((c) => c.backend))],
    };
  } catch (err) {
    throw asActivityFailure(err);
  }
}
