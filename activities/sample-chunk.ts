import { CancelledFailure, Context } from '@temporalio/activity';
import { SampleSetSpec, resolveSamplerChoice, runSampleChunk } from '../core/sampling';
import { InvalidInputError } from '../core/errors';
import type { SampleChunkHeartbeat, SampleChunkInput, SampleChunkResult } from '../workflows/sampling-api';
import { samplingWeights } from './sample-weights';
import { ensureBackend, storeFor, withHeartbeats, yieldToEventLoop } from './runtime';
import { asActivityFailure } from './failures';

/**
 * Samples one chunk of a sample set from a checkpoint's EMA weights into the store (its PNGs, raw bytes
 * and commit record), heartbeating after every denoising step. A chunk an earlier attempt committed is
 * returned as it is.
 */
export async function sampleChunk(input: SampleChunkInput): Promise<SampleChunkResult> {
  const ctx = Context.current();
  const { request: r, chunk } = input;
  const beat: SampleChunkHeartbeat = {
    first: chunk.first,
    count: chunk.count,
    phase: 'loading',
    imagesDone: 0,
    stepsDone: 0,
    stepsTotal: 0,
    imagesPerSec: null,
  };
  try {
    if (chunk.first % r.batch !== 0) {
      throw new InvalidInputError(`chunk at image ${chunk.first} does not start a batch of ${r.batch}`);
    }
    const backend = await ensureBackend(r.backend);
    ctx.heartbeat(beat);
    const w = await withHeartbeats(samplingWeights(r.storeUri, r.runId, r.step), () => beat);
    const spec: SampleSetSpec = {
      runId: r.runId,
      step: r.step,
      sampler: resolveSamplerChoice(w.config, r.sampler),
      seed: r.seed,
      count: r.count,
      batch: r.batch,
    };
    beat.phase = 'sampling';
    const started = performance.now();
    const result = await withHeartbeats(
      runSampleChunk(storeFor(r.storeUri), w.config, w.ema, spec, chunk, {
        images: r.images ?? true,
        backend: backend.name,
        onProgress: async (p) => {
          beat.stepsDone = p.stepsDone;
          beat.stepsTotal = p.stepsTotal;
          beat.imagesDone = (p.stepsDone / p.stepsTotal) * p.imagesTotal;
          beat.imagesPerSec = beat.imagesDone / Math.max((performance.now() - started) / 1000, 1e-9);
          if (p.imagesDone === p.imagesTotal) beat.phase = 'writing';
          ctx.heartbeat(beat);
          await yieldToEventLoop();
          if (ctx.cancellationSignal.aborted) throw new CancelledFailure('sampling cancelled');
        },
      }),
      () => beat,
    );
    const { imageSize, inChannels } = w.config.model;
    return {
      ...result,
      preset: w.config.preset,
      shape: { height: imageSize, width: imageSize, channels: inChannels },
    };
  } catch (err) {
    throw asActivityFailure(err);
  }
}
