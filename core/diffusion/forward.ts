import * as tf from '@tensorflow/tfjs-core';

import { perSampleCoefficient } from './coefficients';
import type { NoiseSchedule } from './schedule';

/** Samples q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with the caller's noise, per-sample t. */
export function qSample(
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  t: Int32Array,
  noise: tf.Tensor4D,
): tf.Tensor4D {
  assertBatch(x0, t);
  if (!tf.util.arraysEqual(x0.shape, noise.shape)) {
    throw new Error(`noise shape [${noise.shape}] differs from x0 shape [${x0.shape}]`);
  }
  schedule.assertTimesteps(t);
  return tf.tidy(() =>
    tf.add(
      tf.mul(perSampleCoefficient(schedule.sqrtAlphasCumprod, t), x0),
      tf.mul(perSampleCoefficient(schedule.sqrtOneMinusAlphasCumprod, t), noise),
    ),
  );
}

/**
 * L_simple of the paper (eq. 14): the squared error between predicted and true noise, summed over all
 * elements and divided by `denominator` — the element count of the whole (global) batch, so the losses of
 * micro-batches and of data-parallel ranks add up to the batch mean. By default this micro-batch's own
 * element count (the plain mean). No tf.tidy here: it runs inside the trainer's gradient function; call it
 * within a tidy.
 */
export function epsilonLoss(epsPred: tf.Tensor, noise: tf.Tensor, denominator = epsPred.size): tf.Scalar {
  if (!tf.util.arraysEqual(epsPred.shape, noise.shape)) {
    throw new Error(`prediction shape [${epsPred.shape}] differs from noise shape [${noise.shape}]`);
  }
  return tf.div(tf.sum(tf.squaredDifference(epsPred, noise)), denominator) as tf.Scalar;
}

function assertBatch(x: tf.Tensor4D, t: ArrayLike<number>): void {
  if (x.shape[0] !== t.length) throw new Error(`batch of ${x.shape[0]} with ${t.length} timesteps`);
}
