import { CancelledFailure, Context } from '@temporalio/activity';
import { decodeKeepMask, decodeModelImage, inpaintImages } from '../core/inpaint';
import { encodeImagePng } from '../core/sampling';
import type { InpaintHeartbeat, InpaintImageInput, InpaintImageResult } from '../workflows/sampling-api';
import { samplingWeights } from './sample-weights';
import { ensureBackend, storeFor, withHeartbeats, yieldToEventLoop } from './runtime';
import { asActivityFailure } from './failures';

/**
 * Fills the masked region of an image in the store with a checkpoint's EMA model (RePaint) and writes
 * the result PNG; heartbeats after every model evaluation.
 */
export async function inpaint(input: InpaintImageInput): Promise<InpaintImageResult> {
  const ctx = Context.current();
  const beat: InpaintHeartbeat = { phase: 'loading', done: 0, total: 0 };
  try {
    await ensureBackend(input.backend);
    const store = storeFor(input.storeUri);
    ctx.heartbeat(beat);
    const w = await withHeartbeats(samplingWeights(input.storeUri, input.runId, input.step), () => beat);
    const { imageSize: s, inChannels: c } = w.config.model;
    const shape = { height: s, width: s, channels: c };
    const model = `the model of run ${input.runId} (preset ${w.config.preset})`;
    const pixels = decodeModelImage(await store.get(input.imageKey), shape, input.imageKey, model);
    const keep = decodeKeepMask(await store.get(input.maskKey), shape, input.maskKey, model);
    beat.phase = 'inpainting';
    const started = performance.now();
    const { pixels: out, sampler } = await inpaintImages(w.config, w.ema, {
      pixels,
      keep,
      count: 1,
      seed: input.seed,
      repaint: input.repaint,
      onProgress: async (done, total) => {
        Object.assign(beat, { done, total });
        ctx.heartbeat(beat);
        await yieldToEventLoop();
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('inpainting cancelled');
      },
    });
    beat.phase = 'writing';
    await withHeartbeats(store.put(input.outKey, encodeImagePng(out, shape)), () => beat);
    return {
      key: input.outKey,
      step: input.step,
      steps: sampler.steps,
      jumpLength: sampler.jumpLength,
      resamplings: sampler.resamplings,
      modelEvaluations: sampler.numModelEvaluations,
      seconds: (performance.now() - started) / 1000,
    };
  } catch (err) {
    throw asActivityFailure(err);
  }
}
