import * as tf from '@tensorflow/tfjs-core';

import { Purpose } from '../rng';
import { perSampleCoefficient } from './coefficients';
import { qSample } from './forward';
import { discretizedGaussianLogLikelihood } from './gaussian';
import { noiseStepKey, standardNormalBatch } from './noise';
import { clipToDataRange, predictX0FromEps, qPosteriorMean } from './posterior';
import { predictEps } from './reverse-loop';
import type { EpsModel } from './sampler';
import type { NoiseSchedule } from './schedule';
import { modelLogVariance, type VarianceType } from './variance';

/**
 * The variational bound of the paper (eq. 5), in bits per dimension, computed as the reference code's
 * `calc_bpd_loop`:  L = L_T + sum_{t>1} L_{t-1} + L_0  with
 *   L_T     = KL(q(x_T | x_0) || N(0, I))                      (prior term),
 *   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))    (0-based index t >= 1),
 *   L_0     = -log p(x_0 | x_1), discretized Gaussian decoder    (0-based index t = 0).
 * Each term is a mean over dimensions, divided by log 2.
 *
 * Unlike the reference, the variance-only part of each Gaussian KL, expm1(d) - d with d the log-variance
 * ratio, is computed per sample in float64 (the variances are per-timestep constants). For the prior term,
 * d = log(1 - abar_T) ~ -4e-5 and that part is ~1e-9 nats, while the reference's float32 -1 - d + exp(d)
 * carries ~5e-8 of rounding error: up to a few per cent of the ~1e-6..2e-5 nats of the whole prior term.
 */

const LOG2 = Math.log(2);

export interface VlbTermOptions {
  /** Clip the predicted x_0 to [-1, 1] before forming the model mean. Default false, as in the reference's KL loss. */
  clipDenoised?: boolean;
}

/**
 * Per-sample bits/dim of the bound's term at 0-based timestep t[b]: the decoder NLL L_0 where t = 0, the KL
 * L_{t} otherwise, for x_t = qSample(x0, t, noise). The model's output is disposed here.
 */
export function vlbTerms(
  schedule: NoiseSchedule,
  model: EpsModel,
  x0: tf.Tensor4D,
  t: Int32Array,
  noise: tf.Tensor4D,
  varianceType: VarianceType = 'fixedlarge',
  options: VlbTermOptions = {},
): tf.Tensor1D {
  if (t.length === 0) throw new Error('vlbTerms needs a non-empty batch');
  const logVariance = modelLogVariance(schedule, varianceType);
  const isDecoder = Array.from(t, (ti) => ti === 0);
  return tf.tidy(() => {
    const xt = qSample(schedule, x0, t, noise);
    const eps = predictEps(model, xt, t);
    const x0Raw = predictX0FromEps(schedule, xt, t, eps);
    if (eps !== xt) eps.dispose();
    const x0Predicted = options.clipDenoised ? clipToDataRange(x0Raw) : x0Raw;
    const modelMean = qPosteriorMean(schedule, x0Predicted, xt, t);

    // Each kind of term only where some sample needs it; tf.where picks per sample when both do.
    const decoderNll = () =>
      decoderNegLogLikelihood(x0, modelMean, tf.mul(0.5, perSampleCoefficient(logVariance, t)));
    if (isDecoder.every((d) => d)) return tf.div<tf.Tensor1D>(decoderNll(), LOG2);
    const kl = klWithPerSampleVariances(
      qPosteriorMean(schedule, x0, xt, t),
      gather(schedule.posteriorLogVarianceClipped, t),
      modelMean,
      gather(logVariance, t),
    );
    const nats = isDecoder.some((d) => d) ? tf.where(tf.tensor1d(isDecoder, 'bool'), decoderNll(), kl) : kl;
    return tf.div<tf.Tensor1D>(nats, LOG2);
  });
}

/** Per-sample prior term L_T = KL(q(x_T | x_0) || N(0, I)) in bits/dim. Nothing in it is learned. */
export function priorBpd(schedule: NoiseSchedule, x0: tf.Tensor4D): tf.Tensor1D {
  const last = new Int32Array(x0.shape[0]).fill(schedule.numTimesteps - 1);
  return tf.tidy(() => {
    const mean = tf.mul<tf.Tensor4D>(perSampleCoefficient(schedule.sqrtAlphasCumprod, last), x0);
    const kl = klWithPerSampleVariances(
      mean,
      gather(schedule.logOneMinusAlphasCumprod, last),
      tf.zerosLike(mean),
      new Float64Array(last.length),
    );
    return tf.div<tf.Tensor1D>(kl, LOG2);
  });
}

export interface FullVlbOptions {
  /** Root of the noise draws (Purpose.Evaluation streams keyed by timestep and global sample index). */
  seed: number;
  /** Evaluate only these 0-based timesteps (see fullVlb for how the total is estimated). Default: all. */
  timesteps?: ArrayLike<number>;
  varianceType?: VarianceType;
  /** Default true, as in the reference's calc_bpd_loop. */
  clipDenoised?: boolean;
  /** Global index of the first sample of x0, so that batches of one evaluation draw disjoint noise. Default 0. */
  firstSampleIndex?: number;
}

export interface VlbEstimate {
  /** Per sample, in bits/dim: the whole bound, or its estimate when only some timesteps were evaluated. */
  totalBpd: Float64Array;
  /** Per sample: the prior term L_T (bits/dim). */
  priorBpd: Float64Array;
  /** The evaluated timesteps, ascending; always contains 0. */
  timesteps: Int32Array;
  /** termsBpd[k][b]: term of sample b at timesteps[k] (the decoder NLL at 0, a KL elsewhere). */
  termsBpd: Float64Array[];
}

/**
 * The variational bound per sample, one x_t per evaluated timestep. With all timesteps (the default) the total
 * is exactly prior + sum of terms. With a subset, the decoder term is always evaluated exactly (it differs in
 * kind from the KL terms) and the T - 1 KL terms are estimated as (T - 1) times the mean of the evaluated
 * ones: unbiased when the subset of t >= 1 is drawn uniformly at random, an approximation otherwise.
 */
export async function fullVlb(
  schedule: NoiseSchedule,
  model: EpsModel,
  x0: tf.Tensor4D,
  opts: FullVlbOptions,
): Promise<VlbEstimate> {
  const T = schedule.numTimesteps;
  const timesteps = evaluatedTimesteps(schedule, opts.timesteps);
  const [B, h, w, c] = x0.shape;
  const varianceType = opts.varianceType ?? 'fixedlarge';
  const clipDenoised = opts.clipDenoised ?? true;
  const firstSampleIndex = opts.firstSampleIndex ?? 0;

  const termsBpd: Float64Array[] = [];
  for (const t of timesteps) {
    const noise = standardNormalBatch([B, h, w, c], {
      seed: opts.seed,
      purpose: Purpose.Evaluation,
      step: noiseStepKey(t),
      firstSampleIndex,
    });
    const terms = vlbTerms(schedule, model, x0, new Int32Array(B).fill(t), noise, varianceType, {
      clipDenoised,
    });
    noise.dispose();
    termsBpd.push(Float64Array.from(await terms.data()));
    terms.dispose();
  }
  const prior = priorBpd(schedule, x0);
  const priorValues = Float64Array.from(await prior.data());
  prior.dispose();

  const klCount = timesteps.length - 1;
  const klWeight = klCount === 0 ? 0 : (T - 1) / klCount;
  const totalBpd = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let klSum = 0;
    for (let k = 1; k < timesteps.length; k++) klSum += termsBpd[k][b];
    totalBpd[b] = priorValues[b] + termsBpd[0][b] + klWeight * klSum;
  }
  return { totalBpd, priorBpd: priorValues, timesteps, termsBpd };
}

/** Sorted, de-duplicated timesteps that always include the decoder step 0 and at least one KL step. */
function evaluatedTimesteps(schedule: NoiseSchedule, requested: ArrayLike<number> | undefined): Int32Array {
  const T = schedule.numTimesteps;
  if (requested === undefined) return new Int32Array(T).map((_, i) => i);
  schedule.assertTimesteps(requested);
  const set = new Set<number>(Array.from(requested));
  set.add(0);
  if (set.size < 2)
    throw new RangeError('timesteps must include at least one t >= 1 to estimate the KL terms');
  return Int32Array.from([...set].sort((a, b) => a - b));
}

/**
 * Per-sample mean over dimensions of KL(N(mean1, exp(logVar1[b])) || N(mean2, exp(logVar2[b]))), in nats.
 * The variance part expm1(d) - d, d = logVar1 - logVar2, is exact in float64; only the mean part is float32.
 */
function klWithPerSampleVariances(
  mean1: tf.Tensor4D,
  logVar1: Float64Array,
  mean2: tf.Tensor4D,
  logVar2: Float64Array,
): tf.Tensor1D {
  const B = logVar1.length;
  const varianceTerm = new Float64Array(B);
  const inverseVariance = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    const d = logVar1[b] - logVar2[b];
    varianceTerm[b] = Math.expm1(d) - d;
    inverseVariance[b] = Math.exp(-logVar2[b]);
  }
  return tf.tidy(() => {
    const meanTerm = tf.mul(
      tf.mean(tf.squaredDifference(mean1, mean2), [1, 2, 3]),
      tf.tensor1d(toFloat32(inverseVariance)),
    );
    return tf.mul<tf.Tensor1D>(0.5, tf.add(tf.tensor1d(toFloat32(varianceTerm)), meanTerm));
  });
}

/** Per-sample mean over dimensions of -log p(x_0 | x_1) under the discretized Gaussian decoder, in nats. */
function decoderNegLogLikelihood(x0: tf.Tensor4D, mean: tf.Tensor4D, logScales: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() =>
    tf.neg(tf.mean<tf.Tensor1D>(discretizedGaussianLogLikelihood(x0, mean, logScales), [1, 2, 3])),
  );
}

function gather(values: Float64Array, t: Int32Array): Float64Array {
  return Float64Array.from(t, (ti) => values[ti]);
}

function toFloat32(values: Float64Array): Float32Array {
  return Float32Array.from(values);
}
