import { CheckpointError, MANIFEST_NAME, parseManifest } from '../checkpoint/checkpoint';
import { CheckpointObjects, CheckpointRepository, SkippedCheckpoint } from '../checkpoint/repository';
import { InvalidInputError } from '../errors';
import type { RunConfig } from '../presets';

export interface SamplingWeights {
  step: number;
  config: RunConfig;
  /** The EMA weights, the ones samples are drawn from (as in the paper). */
  ema: Float32Array;
  /** Newer checkpoints passed over (with why), when the newest valid one was asked for. */
  skipped: SkippedCheckpoint[];
}

/**
 * The EMA weights of checkpoint `step`, or of the newest valid checkpoint when no step is given. A
 * checkpoint that is missing or fails verification is bad input, not a transient fault: retrying the
 * same request cannot fix it.
 */
export async function loadSamplingWeights(
  store: CheckpointObjects,
  runId: string,
  step?: number,
): Promise<SamplingWeights> {
  const repo = new CheckpointRepository(store, runId);
  if (step === undefined) {
    const newest = await repo.newestValid();
    if (!newest) throw new InvalidInputError(`run ${runId} has no valid checkpoint in ${store.uri}`);
    const { state, config } = newest.checkpoint;
    return { step: state.step, config, ema: state.ema, skipped: newest.skipped };
  }
  try {
    const { state, config } = await repo.load(step);
    return { step, config, ema: state.ema, skipped: [] };
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    const steps = await repo.listSteps();
    const have = steps.length > 0 ? `; its checkpoints: ${steps.slice(0, 8).join(', ')}` : '';
    throw new InvalidInputError(
      `run ${runId} has no usable checkpoint at step ${step} (${err.message})${have}`,
    );
  }
}

/**
 * A checkpoint's step and configuration from its manifest alone (no tensors read, nothing verified):
 * enough to validate a request before handing it to the pool, whose trainers load and verify the weights.
 * Without a step, the newest checkpoint that has a manifest.
 */
export async function checkpointConfig(
  store: CheckpointObjects,
  runId: string,
  step?: number,
): Promise<{ step: number; config: RunConfig }> {
  const repo = new CheckpointRepository(store, runId);
  const steps = await repo.listSteps();
  const chosen = step ?? steps[0];
  if (chosen === undefined) throw new InvalidInputError(`run ${runId} has no checkpoint in ${store.uri}`);
  const key = `${repo.keyFor(chosen)}/${MANIFEST_NAME}`;
  const bytes = await store.tryGet(key);
  if (!bytes) {
    const have = steps.length > 0 ? `; its checkpoints: ${steps.slice(0, 8).join(', ')}` : '';
    throw new InvalidInputError(`run ${runId} has no checkpoint at step ${chosen} in ${store.uri}${have}`);
  }
  try {
    return { step: chosen, config: parseManifest(bytes, `${store.uri}/${key}`).config };
  } catch (err) {
    if (err instanceof CheckpointError) throw new InvalidInputError(err.message);
    throw err;
  }
}
