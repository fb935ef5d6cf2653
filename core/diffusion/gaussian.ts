import * as tf from '@tensorflow/tfjs-core';

/**
 * Gaussian log-densities and divergences used by the variational bound, written as in the reference code
 * (`diffusion_utils_2.normal_kl`, `utils.discretized_gaussian_log_likelihood`). All results are in nats.
 */

/** Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))). */
export function normalKl(
  mean1: tf.Tensor | number,
  logvar1: tf.Tensor | number,
  mean2: tf.Tensor | number,
  logvar2: tf.Tensor | number,
): tf.Tensor {
  return tf.tidy(() => {
    const logVarianceRatio = tf.sub(logvar2, logvar1);
    return tf.mul(
      0.5,
      tf.add(
        tf.add(tf.sub(logVarianceRatio, 1), tf.exp(tf.neg(logVarianceRatio))),
        tf.mul(tf.squaredDifference(mean1, mean2), tf.exp(tf.neg(logvar2))),
      ),
    );
  });
}

/**
 * The reference code's approximation of the standard normal CDF, 0.5 (1 + tanh(u)) with
 * u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as the identical sigmoid(2u): in float32, 1 + tanh(u) rounds
 * to 0 for u below about -8.3, while the sigmoid keeps relative precision in the lower tail.
 */
export function approxStandardNormalCdf(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    tf.sigmoid(tf.mul(2 * Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.square(x)))))),
  );
}

/**
 * log P(x) for data quantised to 256 levels and scaled to [-1, 1] (bin width 2/255), under a Gaussian with
 * the given means and log standard deviations: the Gaussian mass of the bin x +- 1/255, where the edge bins
 * extend to -inf (x = -1) and +inf (x = 1). Probabilities are floored at 1e-12 as in the reference.
 *
 * Same function as the reference, but each bin mass is computed on the side of the mean where the CDF values
 * are small, using CDF(-u) = 1 - CDF(u) (exact for the tanh approximation too): the reference's
 * cdf_plus - cdf_min of two numbers close to 1 loses every digit in float32 for bins above the mean.
 */
export function discretizedGaussianLogLikelihood(
  x: tf.Tensor,
  means: tf.Tensor,
  logScales: tf.Tensor | number,
): tf.Tensor {
  return tf.tidy(() => {
    const centered = tf.sub(x, means);
    const invStd = tf.exp(tf.neg(logScales));
    const plusIn = tf.mul(invStd, tf.add(centered, 1 / 255));
    const minIn = tf.mul(invStd, tf.sub(centered, 1 / 255));
    const cdfPlus = approxStandardNormalCdf(plusIn); // P(X <= x + 1/255)
    const cdfMin = approxStandardNormalCdf(minIn);
    const survivalMin = approxStandardNormalCdf(tf.neg(minIn)); // P(X >= x - 1/255)
    const survivalPlus = approxStandardNormalCdf(tf.neg(plusIn));
    const binMass = tf.where(
      tf.greater(centered, 0),
      tf.sub(survivalMin, survivalPlus),
      tf.sub(cdfPlus, cdfMin),
    );
    const logCdfPlus = tf.log(tf.maximum(cdfPlus, 1e-12));
    const logSurvivalMin = tf.log(tf.maximum(survivalMin, 1e-12));
    const logBinMass = tf.log(tf.maximum(binMass, 1e-12));
    const isLowestBin = tf.less(x, -0.999);
    const isHighestBin = tf.greater(x, 0.999);
    return tf.where(isLowestBin, logCdfPlus, tf.where(isHighestBin, logSurvivalMin, logBinMass));
  });
}
