import { Context } from '@temporalio/activity';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { encodePngGrid } from '../core/data';
import { Purpose, hashKey } from '../core/rng';
import { generateImages } from '../core/sampling';
import type { SampleGridInput, SampleGridResult } from '../workflows/api';
import { asNonRetryable, ensureBackend, storeFor } from './runtime';

/** Samples a grid from a checkpoint's EMA weights and stores it as `<runId>/samples/<step>.png`. */
export async function sampleGrid(input: SampleGridInput): Promise<SampleGridResult> {
  const ctx = Context.current();
  try {
    await ensureBackend(input.backend);
    const store = storeFor(input.storeUri);
    const repo = new CheckpointRepository(store, input.runId);
    const step = Number(input.checkpointKey.slice(input.checkpointKey.lastIndexOf('/') + 1));
    const { state, config } = await repo.load(step);
    const pixels = await generateImages(config, state.ema, {
      count: input.count,
      seed: hashKey([config.train.seed, Purpose.Sampling]),
      sampler: input.sampler,
      onProgress: async (done, total) => {
        ctx.heartbeat({ done, total });
        await new Promise<void>((resolve) => setImmediate(resolve));
      },
    });
    const { imageSize: s, inChannels: c } = config.model;
    const key = `${input.runId}/samples/${String(step).padStart(9, '0')}.png`;
    await store.put(key, encodePngGrid(pixels, input.count, s, s, c));
    return { key, step };
  } catch (err) {
    throw asNonRetryable(err);
  }
}
