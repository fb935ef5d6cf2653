import * as tf from '@tensorflow/tfjs-core';
import { Purpose, Rng } from '../rng';
import { breathe } from './breathe';
import type { FeatureMatrix } from './frechet';

/**
 * Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of the squared MMD between two
 * feature sets under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets,
 * as clean-fid and torch-fidelity compute it (100 subsets of 1000 by default). Dot products run on the
 * active TF.js backend (float32, the features' own precision); kernel values and sums are float64.
 */
export interface KidOptions {
  subsets?: number;
  /** Capped at the smaller set's size. */
  subsetSize?: number;
  /** Root of the subset draws. */
  seed: number;
}

export interface KidResult {
  /** Mean of the per-subset estimates. */
  value: number;
  /** Sample standard deviation (n - 1) of the per-subset estimates. */
  std: number;
  /** std / sqrt(subsets): the standard error of the mean over subsets. */
  stdErr: number;
  subsets: number;
  subsetSize: number;
  perSubset: number[];
}

/** Subset i of a set: indices drawn without replacement from a stream keyed by (seed, set, i). */
export function drawSubsets(
  seed: number,
  set: 0 | 1,
  count: number,
  size: number,
  subsets: number,
): Int32Array[] {
  if (size > count) throw new RangeError(`subset size ${size} exceeds the ${count} feature vectors`);
  const out: Int32Array[] = [];
  for (let s = 0; s < subsets; s++) {
    const rng = new Rng([seed, Purpose.Evaluation, set, s]);
    const pool = new Int32Array(count).map((_, i) => i);
    // Partial Fisher-Yates: the first `size` entries are a uniform draw without replacement.
    for (let i = 0; i < size; i++) {
      const j = i + rng.int(count - i);
      const t = pool[i];
      pool[i] = pool[j];
      pool[j] = t;
    }
    out.push(pool.slice(0, size));
  }
  return out;
}

export async function kernelInceptionDistance(
  x: FeatureMatrix,
  y: FeatureMatrix,
  opts: KidOptions,
): Promise<KidResult> {
  const subsetSize = Math.min(opts.subsetSize ?? 1000, x.count, y.count);
  const subsets = opts.subsets ?? 100;
  return kidOnSubsets(
    x,
    y,
    drawSubsets(opts.seed, 0, x.count, subsetSize, subsets),
    drawSubsets(opts.seed, 1, y.count, subsetSize, subsets),
  );
}

/** KID over given subsets (xSubsets[i] pairs with ySubsets[i], all of one size m >= 2). */
export async function kidOnSubsets(
  x: FeatureMatrix,
  y: FeatureMatrix,
  xSubsets: Int32Array[],
  ySubsets: Int32Array[],
): Promise<KidResult> {
  if (x.dim !== y.dim) throw new RangeError(`feature dimensions differ: ${x.dim} vs ${y.dim}`);
  if (xSubsets.length !== ySubsets.length || xSubsets.length === 0) {
    throw new RangeError('KID needs the same, non-zero number of subsets of each set');
  }
  const m = xSubsets[0].length;
  if (m < 2) throw new RangeError('KID needs subsets of at least 2 feature vectors');
  const d = x.dim;
  const xt = tf.tensor2d(x.values, [x.count, d]);
  const yt = tf.tensor2d(y.values, [y.count, d]);
  const perSubset: number[] = [];
  try {
    for (let s = 0; s < xSubsets.length; s++) {
      await breathe();
      if (xSubsets[s].length !== m || ySubsets[s].length !== m)
        throw new RangeError('subsets differ in size');
      const [kxx, kyy, kxy] = tf.tidy(() => {
        const a = tf.gather(xt, tf.tensor1d(xSubsets[s], 'int32'));
        const b = tf.gather(yt, tf.tensor1d(ySubsets[s], 'int32'));
        return [tf.matMul(a, a, false, true), tf.matMul(b, b, false, true), tf.matMul(a, b, false, true)];
      });
      const [dxx, dyy, dxy] = [kxx.dataSync(), kyy.dataSync(), kxy.dataSync()];
      tf.dispose([kxx, kyy, kxy]);
      const k = (dot: number) => (dot / d + 1) ** 3;
      let sxx = 0;
      let syy = 0;
      let sxy = 0;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < m; j++) {
          if (i !== j) {
            sxx += k(dxx[i * m + j]);
            syy += k(dyy[i * m + j]);
          }
          sxy += k(dxy[i * m + j]);
        }
      }
      perSubset.push((sxx + syy) / (m * (m - 1)) - (2 * sxy) / (m * m));
    }
  } finally {
    tf.dispose([xt, yt]);
  }
  const n = perSubset.length;
  const value = perSubset.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(perSubset.reduce((a, v) => a + (v - value) ** 2, 0) / (n - 1)) : 0;
  return { value, std, stdErr: std / Math.sqrt(n), subsets: n, subsetSize: m, perSubset };
}
