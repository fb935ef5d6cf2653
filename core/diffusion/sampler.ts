import type * as tf from '@tensorflow/tfjs-core';

/**
 * A noise-prediction network eps_theta(x_t, t) with 0-based timesteps. It must not dispose its inputs; the
 * caller owns (and disposes) the tensor it returns.
 */
export type EpsModel = (x: tf.Tensor4D, t: Int32Array) => tf.Tensor4D;

export interface SampleOptions {
  /** Root of every random draw of this sampling run. */
  seed: number;
  /** Global index of the first sample of this batch, so batches of one run draw disjoint noise. Default 0. */
  firstSampleIndex?: number;
  /** Start from this x_T instead of drawing it; the caller keeps ownership of it. */
  xT?: tf.Tensor4D;
  /** Called after each denoising step with the number of steps done and the total. */
  onStep?: (done: number, total: number) => void | Promise<void>;
}

export interface Sampler {
  /** Number of model evaluations one call to `sample` makes. */
  readonly numSteps: number;
  sample(model: EpsModel, shape: [number, number, number, number], opts: SampleOptions): Promise<tf.Tensor4D>;
}
