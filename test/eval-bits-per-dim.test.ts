/**
 * The held-out bits/dim estimator against the exact bound of core/diffusion/vlb.ts (itself tested
 * against the paper's reference formulas in diffusion-vlb.test.ts): equal when every timestep is used,
 * unbiased when only some are, with an honest standard error.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { fullVlb, NoiseSchedule, type EpsModel } from '../core/diffusion';
import { toFloatRange } from '../core/data';
import { bitsPerDim, klStrata } from '../core/eval/bits-per-dim';
import { Rng } from '../core/rng';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const T = 40;
const schedule = NoiseSchedule.fromConfig({ kind: 'linear', T, betaStart: 1e-3, betaEnd: 0.2 });
// An imperfect but t-dependent noise predictor, so every KL term differs.
const model: EpsModel = (x, t) =>
  tf.tidy(() =>
    tf.mul(
      x,
      tf.tensor4d(
        Float32Array.from(t, (ti) => 0.3 + ti / (2 * T)),
        [t.length, 1, 1, 1],
      ),
    ),
  );

function images(count: number) {
  const rng = new Rng([3]);
  const pixels = Uint8Array.from({ length: count * 4 * 4 * 2 }, () => rng.int(256));
  return { pixels, count, height: 4, width: 4, channels: 2 };
}

async function exactPerImage(imgs: ReturnType<typeof images>, seed: number): Promise<Float64Array> {
  const x0 = tf.tensor4d(toFloatRange(imgs.pixels), [imgs.count, 4, 4, 2]);
  const full = await fullVlb(schedule, model, x0, { seed });
  x0.dispose();
  return full.totalBpd;
}

test('strata cover 1..T-1 exactly once', () => {
  for (const k of [1, 3, 7, T - 1]) {
    const strata = klStrata(T, k);
    expect(strata).toHaveLength(k);
    expect(strata[0][0]).toBe(1);
    expect(strata[k - 1][1]).toBe(T);
    for (let s = 1; s < k; s++) expect(strata[s][0]).toBe(strata[s - 1][1]);
  }
  expect(() => klStrata(T, 0)).toThrow(/1\.\.39/);
  expect(() => klStrata(T, T)).toThrow(/1\.\.39/);
});

test("'all' equals the exact bound per image, batching aside", async () => {
  const imgs = images(6);
  const exact = await exactPerImage(imgs, 21);
  const r = await bitsPerDim(schedule, model, imgs, { timestepsPerImage: 'all', seed: 21, batchSize: 4 });
  expect(r.estimator).toBe('exact');
  expect(r.timestepsPerImage).toBe(T - 1);
  r.perImage.forEach((v, i) => expect(v).toBeCloseTo(exact[i], 5));
  expect(r.priorBpd + r.decoderBpd + r.klBpd).toBeCloseTo(r.bpd, 10);
  const mean = exact.reduce((a, v) => a + v, 0) / exact.length;
  const sd = Math.sqrt(exact.reduce((a, v) => a + (v - mean) ** 2, 0) / (exact.length - 1));
  expect(r.bpd).toBeCloseTo(mean, 5);
  expect(r.stdErr).toBeCloseTo(sd / Math.sqrt(6), 5);
});

test('the stratified estimate is unbiased: its mean over seeds approaches the exact bound', async () => {
  const imgs = images(4);
  // Exact bound of these images averaged over the forward-process noise too (the estimator's noise
  // draws differ per seed), from several exact evaluations.
  const seeds = Array.from({ length: 24 }, (_, i) => 100 + i);
  let exactSum = 0;
  let estimateSum = 0;
  let estimateSq = 0;
  for (const seed of seeds) {
    const exact = await exactPerImage(imgs, seed);
    exactSum += exact.reduce((a, v) => a + v, 0) / exact.length;
    const r = await bitsPerDim(schedule, model, imgs, { timestepsPerImage: 3, seed, batchSize: 4 });
    expect(r.estimator).toBe('stratified');
    estimateSum += r.bpd;
    estimateSq += r.bpd ** 2;
  }
  const n = seeds.length;
  const exactMean = exactSum / n;
  const estimateMean = estimateSum / n;
  const se = Math.sqrt((estimateSq / n - estimateMean ** 2) / (n - 1));
  expect(se).toBeGreaterThan(0);
  expect(Math.abs(estimateMean - exactMean)).toBeLessThan(4 * se);
});

test('timestep draws and noise belong to the image, not to its batch', async () => {
  const imgs = images(5);
  const a = await bitsPerDim(schedule, model, imgs, { timestepsPerImage: 4, seed: 9, batchSize: 5 });
  const b = await bitsPerDim(schedule, model, imgs, { timestepsPerImage: 4, seed: 9, batchSize: 2 });
  a.perImage.forEach((v, i) => expect(b.perImage[i]).toBeCloseTo(v, 5));
  const c = await bitsPerDim(schedule, model, imgs, { timestepsPerImage: 4, seed: 10, batchSize: 5 });
  expect(c.bpd).not.toBeCloseTo(a.bpd, 6);
});
