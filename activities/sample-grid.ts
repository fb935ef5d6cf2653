import { Context } from '@temporalio/activity';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { sampleGridKey, sampleGridPng } from '../core/sampling';
import type { SampleGridInput, SampleGridResult } from '../workflows/api';
import { ensureBackend, storeFor, yieldToEventLoop } from './runtime';
import { asActivityFailure } from './failures';

/** Samples a grid from a checkpoint's EMA weights and stores it as `<runId>/samples/<step>.png`. */
export async function sampleGrid(input: SampleGridInput): Promise<SampleGridResult> {
  const ctx = Context.current();
  try {
    await ensureBackend(input.backend);
    const store = storeFor(input.storeUri);
    const repo = new CheckpointRepository(store, input.runId);
    const step = Number(input.checkpointKey.slice(input.checkpointKey.lastIndexOf('/') + 1));
    const { state, config } = await repo.load(step);
    const png = await sampleGridPng(config, state.ema, {
      count: input.count,
      sampler: input.sampler,
      onProgress: async (p) => {
        ctx.heartbeat({ done: p.stepsDone, total: p.stepsTotal });
        await yieldToEventLoop();
      },
    });
    const key = sampleGridKey(input.runId, step);
    await store.put(key, png);
    return { key, step };
  } catch (err) {
    throw asActivityFailure(err);
  }
}
