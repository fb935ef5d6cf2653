/**
 * FID's Fréchet distance and KID against independent numbers: closed forms for known Gaussians, and
 * numpy/scipy on the same feature matrices (test/fixtures/eval/reference.json, made by make_reference.py
 * beside it; CI needs no Python).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import reference from './fixtures/eval/reference.json';
import { frechetDistance, gaussianStats, psdSqrt, type GaussianStats } from '../core/eval/frechet';
import { drawSubsets, kernelInceptionDistance, kidOnSubsets } from '../core/eval/kid';
import { matmul, symmetricEigen } from '../core/eval/symmetric-eigen';
import { Rng } from '../core/rng';
import { fixtureFeatures } from './helpers/eval-features';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const gaussian = (mean: number[], cov: number[][]): GaussianStats => ({
  dim: mean.length,
  count: 1000,
  mean: Float64Array.from(mean),
  cov: Float64Array.from(cov.flat()),
});

function randomSpd(n: number, seed: number, rank = n): Float64Array {
  const rng = new Rng([seed]);
  const a = Float64Array.from({ length: n * rank }, () => rng.normal());
  const s = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++)
      for (let k = 0; k < rank; k++) s[i * n + j] += a[i * rank + k] * a[j * rank + k];
  return s;
}

describe('symmetric eigendecomposition and PSD square root', () => {
  test.each([1, 2, 7, 40])('n = %i: S = V^T diag(l) V with orthonormal V, and sqrt(S)^2 = S', async (n) => {
    const s = randomSpd(n, n);
    const { values, vectors } = await symmetricEigen(s, n);
    for (let i = 1; i < n; i++) expect(values[i]).toBeGreaterThanOrEqual(values[i - 1]);
    const w = vectors!;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let rebuilt = 0;
        let gram = 0;
        for (let k = 0; k < n; k++) {
          rebuilt += w[k * n + i] * values[k] * w[k * n + j];
          gram += w[i * n + k] * w[j * n + k];
        }
        expect(rebuilt).toBeCloseTo(s[i * n + j], 9);
        expect(gram).toBeCloseTo(i === j ? 1 : 0, 12);
      }
    }
    const r = await psdSqrt(s, n);
    const squared = await matmul(r, r, n);
    squared.forEach((v, k) => expect(v).toBeCloseTo(s[k], 9));
  });

  test('a rank-deficient matrix keeps its zero eigenvalues (no NaN from rounding below zero)', async () => {
    const n = 12;
    const r = await psdSqrt(randomSpd(n, 3, 4), n);
    expect(r.every(Number.isFinite)).toBe(true);
    const eig = (await symmetricEigen(randomSpd(n, 3, 4), n, false)).values;
    expect(Math.abs(eig[0])).toBeLessThan(1e-10);
  });
});

describe('Fréchet distance: closed forms', () => {
  test('identical Gaussians are at distance 0', async () => {
    const g = gaussian(
      [1, -2, 0.5],
      [
        [2, 0.3, 0],
        [0.3, 1, -0.2],
        [0, -0.2, 0.5],
      ],
    );
    expect((await frechetDistance(g, g)).distance).toBeCloseTo(0, 10);
  });

  test('diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2', async () => {
    const a = gaussian(
      [0, 1, 2],
      [
        [4, 0, 0],
        [0, 1, 0],
        [0, 0, 9],
      ],
    );
    const b = gaussian(
      [1, 1, 0],
      [
        [1, 0, 0],
        [0, 4, 0],
        [0, 0, 9],
      ],
    );
    // (1 + 0 + 4) + ((2-1)^2 + (1-2)^2 + 0) = 7
    expect((await frechetDistance(a, b)).distance).toBeCloseTo(7, 10);
  });

  test('commuting covariances (same eigenvectors, rotated): tr sqrt(S1 S2) = sum sqrt(l1_i l2_i)', async () => {
    const c = Math.cos(0.7);
    const s = Math.sin(0.7);
    const rot = (l1: number, l2: number) => [
      [c * c * l1 + s * s * l2, c * s * (l1 - l2)],
      [c * s * (l1 - l2), s * s * l1 + c * c * l2],
    ];
    const a = gaussian([0, 0], rot(3, 0.5));
    const b = gaussian([0, 0], rot(12, 2));
    const expected = 3 + 0.5 + 12 + 2 - 2 * (Math.sqrt(36) + Math.sqrt(1));
    expect((await frechetDistance(a, b)).distance).toBeCloseTo(expected, 10);
  });

  test('non-commuting 2x2 covariances: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2', async () => {
    const s1 = [
      [2, 0.5],
      [0.5, 1],
    ];
    const s2 = [
      [1, -0.7],
      [-0.7, 3],
    ];
    const m = [
      [s1[0][0] * s2[0][0] + s1[0][1] * s2[1][0], s1[0][0] * s2[0][1] + s1[0][1] * s2[1][1]],
      [s1[1][0] * s2[0][0] + s1[1][1] * s2[1][0], s1[1][0] * s2[0][1] + s1[1][1] * s2[1][1]],
    ];
    const trM = m[0][0] + m[1][1];
    const detM = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    const trSqrt = Math.sqrt(trM + 2 * Math.sqrt(detM));
    const r = await frechetDistance(gaussian([1, 0], s1), gaussian([0, 2], s2));
    expect(r.traceSqrtProduct).toBeCloseTo(trSqrt, 12);
    expect(r.distance).toBeCloseTo(5 + 3 + 4 - 2 * trSqrt, 12);
  });

  test('sample statistics of Gaussian draws converge to the closed form', async () => {
    const rng = new Rng([11]);
    const n = 20000;
    const draw = (mu: number[], sd: number[]) => {
      const values = new Float32Array(n * 2);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < 2; j++) values[i * 2 + j] = mu[j] + sd[j] * rng.normal();
      return gaussianStats({ count: n, dim: 2, values });
    };
    const fid = (await frechetDistance(await draw([0, 0], [1, 2]), await draw([1, 0], [2, 2]))).distance;
    // Closed form 1 + (1-2)^2 + 0 = 2. The estimate's standard deviation at n = 20000 is about 0.04
    // (delta method: 2 se(mean diff) and 2 se(sd diff) on the first axis): allow 4 of them.
    expect(Math.abs(fid - 2)).toBeLessThan(0.16);
  });
});

describe('FID and KID against numpy/scipy on the same features', () => {
  const cases = Object.entries(reference.cases);

  test.each(cases)('%s: statistics', async (_, c) => {
    const a = await gaussianStats(fixtureFeatures(c.x));
    expect(Array.from(a.mean.subarray(0, 4))).toEqual(c.mean1_first4.map((v) => expect.closeTo(v, 14)));
    expect(a.cov[0]).toBeCloseTo(c.cov1_00_01[0], 13);
    expect(a.cov[1]).toBeCloseTo(c.cov1_00_01[1], 13);
  });

  test.each(cases)('%s: Fréchet distance and its terms', async (_, c) => {
    const a = await gaussianStats(fixtureFeatures(c.x));
    const b = await gaussianStats(fixtureFeatures(c.y));
    const r = await frechetDistance(a, b);
    expect(r.meanTerm).toBeCloseTo(c.meanTerm, 12);
    // The nuclear-norm identity is exact in exact arithmetic; scipy's sqrtm agrees with it to ~1e-8 here.
    expect(r.traceSqrtProduct).toBeCloseTo(c.traceSqrtProduct_nuclear, 10);
    expect(r.distance).toBeCloseTo(c.fid_nuclear, 9);
    expect(r.distance).toBeCloseTo(c.fid_pytorch_fid, 6);
    // Reusing a cached square root of the first covariance gives the same number.
    expect((await frechetDistance(a, b, await psdSqrt(a.cov, a.dim))).distance).toBeCloseTo(r.distance, 12);
  });

  test.each(cases)('%s: KID per subset, mean and spread on the same subsets', async (_, c) => {
    const x = fixtureFeatures(c.x);
    const y = fixtureFeatures(c.y);
    const r = await kidOnSubsets(
      x,
      y,
      c.kid.xSubsets.map((s) => Int32Array.from(s)),
      c.kid.ySubsets.map((s) => Int32Array.from(s)),
    );
    r.perSubset.forEach((v, i) => expect(v).toBeCloseTo(c.kid.perSubset[i], 12));
    expect(r.value).toBeCloseTo(c.kid.mean, 12);
    expect(r.std).toBeCloseTo(c.kid.std, 12);
    expect(r.stdErr).toBeCloseTo(c.kid.std / Math.sqrt(5), 12);
    const k = c.kid.wholeSize;
    const whole = await kidOnSubsets(
      x,
      y,
      [Int32Array.from({ length: k }, (_, i) => i)],
      [Int32Array.from({ length: k }, (_, i) => i)],
    );
    expect(whole.value).toBeCloseTo(c.kid.whole, 12);
  });
});

describe('KID', () => {
  test('subsets are deterministic draws without replacement', async () => {
    const a = drawSubsets(7, 0, 50, 20, 3);
    expect(drawSubsets(7, 0, 50, 20, 3)).toEqual(a);
    for (const s of a) expect(new Set(s).size).toBe(20);
    expect(drawSubsets(7, 1, 50, 20, 3)).not.toEqual(a);
  });

  test('two samples of one distribution score near 0; a shifted one clearly above', async () => {
    const rng = new Rng([5]);
    const make = (shift: number) => {
      const values = new Float32Array(400 * 8).map(() => rng.normal() + shift);
      return { count: 400, dim: 8, values };
    };
    const base = make(0);
    const same = await kernelInceptionDistance(base, make(0), { seed: 1, subsets: 20, subsetSize: 200 });
    const shifted = await kernelInceptionDistance(base, make(0.5), { seed: 1, subsets: 20, subsetSize: 200 });
    expect(Math.abs(same.value)).toBeLessThan(3 * same.stdErr + 0.01);
    expect(shifted.value).toBeGreaterThan(shifted.value - 10 * shifted.stdErr);
    expect(shifted.value).toBeGreaterThan(10 * Math.abs(same.value));
  });
});
