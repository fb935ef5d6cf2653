import * as tf from '@tensorflow/tfjs-core';

import { Purpose } from '../rng';
import { INITIAL_NOISE_STEP, standardNormalBatch } from './noise';
import type { EpsModel, SampleOptions } from './sampler';

/**
 * Runs a reverse process from x_T ~ N(0, I) through `timesteps` (in the order visited, i.e. descending).
 * `step(x, t, i)` maps x at timestep t to x at the next visited timestep (or to x_0 after the last); it runs
 * inside a tidy, so only the returned tensor survives each step.
 */
export async function runReverseProcess(
  shape: [number, number, number, number],
  timesteps: Int32Array,
  opts: SampleOptions,
  step: (x: tf.Tensor4D, t: number, i: number) => tf.Tensor4D,
): Promise<tf.Tensor4D> {
  const firstSampleIndex = opts.firstSampleIndex ?? 0;
  if (opts.xT !== undefined && !tf.util.arraysEqual(opts.xT.shape, shape)) {
    throw new Error(`xT shape [${opts.xT.shape}] differs from the requested shape [${shape}]`);
  }
  let x =
    opts.xT ??
    standardNormalBatch(shape, {
      seed: opts.seed,
      purpose: Purpose.Sampling,
      step: INITIAL_NOISE_STEP,
      firstSampleIndex,
    });
  for (let i = 0; i < timesteps.length; i++) {
    const current = x;
    try {
      x = tf.tidy(() => step(current, timesteps[i], i));
    } finally {
      // On a throw this frees the last state (tidy has freed the step's own tensors).
      if (current !== opts.xT) current.dispose();
    }
    try {
      // Awaited, so a caller can yield the event loop (e.g. to heartbeat) during long sampling runs.
      await opts.onStep?.(i + 1, timesteps.length);
    } catch (error) {
      x.dispose();
      throw error;
    }
  }
  // With no steps the result would alias the caller's xT, whose ownership stays with the caller.
  return x === opts.xT ? x.clone() : x;
}

/** Calls the model at one timestep for the whole batch and checks what it returns. */
export function predictEps(model: EpsModel, x: tf.Tensor4D, t: Int32Array): tf.Tensor4D {
  const eps = model(x, t);
  if (!tf.util.arraysEqual(eps.shape, x.shape)) {
    throw new Error(`model returned shape [${eps.shape}] for input [${x.shape}]`);
  }
  return eps;
}
