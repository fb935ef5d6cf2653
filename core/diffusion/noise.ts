import * as tf from '@tensorflow/tfjs-core';

import { Purpose, Rng } from '../rng';

/**
 * Standard normal noise for a batch, one Rng stream per sample keyed by
 * [seed, purpose, step, firstSampleIndex + i]. Keying by the global sample index (not the position in the
 * batch) makes a sample's noise independent of how samples are grouped into batches.
 *
 * Step keys used by the samplers and the bound: INITIAL_NOISE_STEP for x_T, and t + 1 (the paper's 1-based
 * timestep) for the noise drawn while at 0-based timestep t. Samplers that visit the same timestep therefore
 * draw the same noise there, which lets tests compare DDIM (eta = 1, all steps) with ancestral sampling exactly.
 */
export const INITIAL_NOISE_STEP = 0;

export function noiseStepKey(t: number): number {
  return t + 1;
}

export interface NoiseKey {
  seed: number;
  purpose: Purpose;
  step: number;
  firstSampleIndex: number;
}

export function standardNormalBatch(shape: [number, number, number, number], key: NoiseKey): tf.Tensor4D {
  const [n, h, w, c] = shape;
  const perSample = h * w * c;
  const values = new Float32Array(n * perSample);
  for (let i = 0; i < n; i++) {
    new Rng([key.seed, key.purpose, key.step, key.firstSampleIndex + i]).fillNormal(
      values,
      i * perSample,
      perSample,
    );
  }
  return tf.tensor4d(values, shape);
}
