import * as tf from '@tensorflow/tfjs-core';
import { toFloatRange } from '../data';
import { noiseStepKey, priorBpd, vlbTerms, type EpsModel, type NoiseSchedule } from '../diffusion';
import type { VarianceType } from '../diffusion';
import { Purpose, Rng } from '../rng';

/**
 * Negative log-likelihood in bits/dim on held-out images: the DDPM variational bound
 * L = L_T (prior) + sum_{t=1}^{T-1} L_t (KL terms) + L_0 (discretized decoder), per image.
 *
 * 'exact' evaluates every KL term (T - 1 model calls per image). 'stratified' keeps the prior and decoder
 * exact and estimates the KL sum without bias: 1..T-1 is cut into K strata of near-equal size, each image
 * draws one t uniformly in each stratum (its own draws), and the sum is estimated as
 * sum_k |stratum_k| L_{t_k}. Per-image estimates are then independent and unbiased, so the standard error
 * of their mean, sd / sqrt(n), covers both the choice of images and the choice of timesteps.
 *
 * Noise for image i at timestep t is keyed (seed, Evaluation, t + 1, i), as in core/diffusion's fullVlb:
 * with K = T - 1 both give the same terms.
 */
export interface BitsPerDimOptions {
  /** KL timesteps per image, or 'all' for the exact bound. */
  timestepsPerImage: number | 'all';
  seed: number;
  /** Images per model call. */
  batchSize: number;
  varianceType?: VarianceType;
  /** Clip predicted x_0 to [-1, 1], as the reference's calc_bpd_loop. Default true. */
  clipDenoised?: boolean;
  onProgress?: (done: number, total: number) => void | Promise<void>;
}

export interface BitsPerDimResult {
  /** Mean over images of the per-image bound (or its estimate), bits/dim. */
  bpd: number;
  /** Standard error of that mean. */
  stdErr: number;
  images: number;
  estimator: 'exact' | 'stratified';
  /** KL timesteps evaluated per image (T - 1 when exact). */
  timestepsPerImage: number;
  /** Means of the parts (bits/dim): they add up to bpd. */
  priorBpd: number;
  decoderBpd: number;
  klBpd: number;
  perImage: Float64Array;
}

export interface ImagesToScore {
  /** NHWC bytes of `count` images. */
  pixels: Uint8Array;
  count: number;
  height: number;
  width: number;
  channels: number;
  /** Global index of each image (keys its noise and timestep draws); default 0..count-1. */
  indices?: Int32Array;
}

/** Strata of 1..T-1: [start, end) pairs of near-equal size. */
export function klStrata(T: number, k: number): Array<[number, number]> {
  const n = T - 1;
  if (!Number.isInteger(k) || k < 1 || k > n)
    throw new RangeError(`timesteps per image must be 1..${n}, got ${k}`);
  const out: Array<[number, number]> = [];
  for (let s = 0; s < k; s++) out.push([1 + Math.floor((s * n) / k), 1 + Math.floor(((s + 1) * n) / k)]);
  return out;
}

export async function bitsPerDim(
  schedule: NoiseSchedule,
  model: EpsModel,
  images: ImagesToScore,
  opts: BitsPerDimOptions,
): Promise<BitsPerDimResult> {
  const T = schedule.numTimesteps;
  const { count, height: h, width: w, channels: c } = images;
  if (count < 2) throw new RangeError('bits/dim needs at least 2 images (for its standard error)');
  const perImagePixels = h * w * c;
  const indices = images.indices ?? Int32Array.from({ length: count }, (_, i) => i);
  const exact = opts.timestepsPerImage === 'all';
  const strata = klStrata(T, exact ? T - 1 : (opts.timestepsPerImage as number));
  const varianceType = opts.varianceType ?? 'fixedlarge';
  const clipDenoised = opts.clipDenoised ?? true;

  const prior = new Float64Array(count);
  const decoder = new Float64Array(count);
  const kl = new Float64Array(count);
  const batches = Math.ceil(count / opts.batchSize);
  const total = batches * (strata.length + 1);
  let done = 0;

  for (let first = 0; first < count; first += opts.batchSize) {
    const n = Math.min(opts.batchSize, count - first);
    const batchIndices = indices.subarray(first, first + n);
    const x0 = tf.tensor4d(
      toFloatRange(images.pixels.subarray(first * perImagePixels, (first + n) * perImagePixels)),
      [n, h, w, c],
    );
    try {
      // Each image's stratum draws come from its own stream, so they do not depend on the batching.
      const draws = Array.from(batchIndices, (i) => new Rng([opts.seed, Purpose.Evaluation, 0, i]));
      const t = new Int32Array(n);
      for (let s = 0; s <= strata.length; s++) {
        let weight = 1;
        if (s === 0) t.fill(0);
        else {
          const [lo, hi] = strata[s - 1];
          weight = hi - lo;
          for (let b = 0; b < n; b++) t[b] = lo + draws[b].int(hi - lo);
        }
        const noise = noiseFor(opts.seed, t, batchIndices, [n, h, w, c]);
        const terms = vlbTerms(schedule, model, x0, t, noise, varianceType, { clipDenoised });
        noise.dispose();
        const values = await terms.data();
        terms.dispose();
        for (let b = 0; b < n; b++) {
          if (s === 0) decoder[first + b] = values[b];
          else kl[first + b] += weight * values[b];
        }
        await opts.onProgress?.(++done, total);
      }
      const p = priorBpd(schedule, x0);
      const pv = await p.data();
      p.dispose();
      for (let b = 0; b < n; b++) prior[first + b] = pv[b];
    } finally {
      x0.dispose();
    }
  }

  const perImage = new Float64Array(count);
  for (let i = 0; i < count; i++) perImage[i] = prior[i] + decoder[i] + kl[i];
  const mean = (a: Float64Array) => a.reduce((s, v) => s + v, 0) / a.length;
  const bpd = mean(perImage);
  const variance = perImage.reduce((s, v) => s + (v - bpd) ** 2, 0) / (count - 1);
  return {
    bpd,
    stdErr: Math.sqrt(variance / count),
    images: count,
    estimator: exact ? 'exact' : 'stratified',
    timestepsPerImage: strata.length,
    priorBpd: mean(prior),
    decoderBpd: mean(decoder),
    klBpd: mean(kl),
    perImage,
  };
}

/** Per-image noise at its own timestep, keyed as fullVlb keys it. */
function noiseFor(
  seed: number,
  t: Int32Array,
  indices: Int32Array,
  shape: [number, number, number, number],
): tf.Tensor4D {
  const per = shape[1] * shape[2] * shape[3];
  const values = new Float32Array(shape[0] * per);
  for (let b = 0; b < shape[0]; b++) {
    new Rng([seed, Purpose.Evaluation, noiseStepKey(t[b]), indices[b]]).fillNormal(values, b * per, per);
  }
  return tf.tensor4d(values, shape);
}
