import * as tf from '@tensorflow/tfjs-core';

import { perSampleCoefficient } from './coefficients';
import type { NoiseSchedule } from './schedule';

/** x_0 implied by x_t and a noise prediction: x_0 = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps. */
export function predictX0FromEps(
  schedule: NoiseSchedule,
  xt: tf.Tensor4D,
  t: Int32Array,
  eps: tf.Tensor4D,
): tf.Tensor4D {
  return tf.tidy(() =>
    tf.sub(
      tf.mul(perSampleCoefficient(schedule.sqrtRecipAlphasCumprod, t), xt),
      tf.mul(perSampleCoefficient(schedule.sqrtRecipm1AlphasCumprod, t), eps),
    ),
  );
}

/** Noise implied by x_t and an x_0 prediction (the inverse of predictX0FromEps). */
export function predictEpsFromX0(
  schedule: NoiseSchedule,
  xt: tf.Tensor4D,
  t: Int32Array,
  x0: tf.Tensor4D,
): tf.Tensor4D {
  return tf.tidy(() =>
    tf.div(
      tf.sub(tf.mul(perSampleCoefficient(schedule.sqrtRecipAlphasCumprod, t), xt), x0),
      perSampleCoefficient(schedule.sqrtRecipm1AlphasCumprod, t),
    ),
  );
}

/** Mean of q(x_{t-1} | x_t, x_0) (paper eq. 7): coef1_t x_0 + coef2_t x_t. */
export function qPosteriorMean(
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  xt: tf.Tensor4D,
  t: Int32Array,
): tf.Tensor4D {
  return tf.tidy(() =>
    tf.add(
      tf.mul(perSampleCoefficient(schedule.posteriorMeanCoef1, t), x0),
      tf.mul(perSampleCoefficient(schedule.posteriorMeanCoef2, t), xt),
    ),
  );
}

/** Images are scaled to [-1, 1], so a predicted x_0 outside it can be clipped without losing anything true. */
export function clipToDataRange(x0: tf.Tensor4D): tf.Tensor4D {
  return tf.clipByValue(x0, -1, 1);
}
