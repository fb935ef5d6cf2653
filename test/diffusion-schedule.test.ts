import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { epsilonLoss, NoiseSchedule, qSample } from '../core/diffusion';
import { Rng } from '../core/rng';

// Every expected value here is computed in float64 directly from the paper's definitions, independently of
// core/diffusion (no shared helpers).

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** numpy.linspace(start, end, T) as the paper's code uses it. */
function linspace(start: number, end: number, T: number): number[] {
  return Array.from({ length: T }, (_, i) => start + ((end - start) * i) / (T - 1));
}

function cumprodOneMinus(betas: number[]): number[] {
  const out: number[] = [];
  let p = 1;
  for (const b of betas) {
    p *= 1 - b;
    out.push(p);
  }
  return out;
}

function expectRelClose(actual: number, expected: number, rel: number): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(rel * Math.abs(expected));
}

describe('NoiseSchedule.linear (the paper: T = 1000, beta from 1e-4 to 0.02)', () => {
  const schedule = NoiseSchedule.linear();
  const betas = linspace(1e-4, 0.02, 1000);
  const abar = cumprodOneMinus(betas);
  const probes = [0, 1, 2, 10, 137, 500, 998, 999];

  it('has the paper betas and abar as a float64 product', () => {
    expect(schedule.numTimesteps).toBe(1000);
    expect(schedule.betas[0]).toBe(1e-4);
    expect(schedule.betas[999]).toBe(0.02);
    for (const t of probes) {
      expectRelClose(schedule.betas[t], betas[t], 1e-14);
      expectRelClose(schedule.alphasCumprod[t], abar[t], 1e-12);
    }
    // Product computed a second, different way: exp(sum log(1 - beta)).
    const viaLogs = Math.exp(betas.reduce((s, b) => s + Math.log1p(-b), 0));
    expectRelClose(schedule.alphasCumprod[999], viaLogs, 1e-10);
    // Known value of the paper's schedule: abar_T ~ 4.04e-5 (sqrt ~ 0.00635), so x_T is almost pure noise.
    expect(schedule.alphasCumprod[999]).toBeGreaterThan(4.0e-5);
    expect(schedule.alphasCumprod[999]).toBeLessThan(4.1e-5);
  });

  it('derives every quantity of the reference code at several timesteps', () => {
    for (const t of probes) {
      const a = abar[t];
      const aPrev = t === 0 ? 1 : abar[t - 1];
      const beta = betas[t];
      expectRelClose(schedule.alphas[t], 1 - beta, 1e-15);
      expect(schedule.alphasCumprodPrev[t]).toBe(t === 0 ? 1 : schedule.alphasCumprod[t - 1]);
      expectRelClose(schedule.sqrtAlphasCumprod[t], Math.sqrt(a), 1e-12);
      expectRelClose(schedule.sqrtOneMinusAlphasCumprod[t], Math.sqrt(1 - a), 1e-10);
      expectRelClose(schedule.logOneMinusAlphasCumprod[t], Math.log(1 - a), 1e-10);
      expectRelClose(schedule.sqrtRecipAlphasCumprod[t], 1 / Math.sqrt(a), 1e-12);
      expectRelClose(schedule.sqrtRecipm1AlphasCumprod[t], Math.sqrt((1 - a) / a), 1e-10);
      if (t > 0) expectRelClose(schedule.posteriorVariance[t], (beta * (1 - aPrev)) / (1 - a), 1e-10);
    }
    expect(schedule.posteriorVariance[0]).toBe(0);
    expect(schedule.posteriorLogVarianceClipped[0]).toBe(Math.log(schedule.posteriorVariance[1]));
    for (const t of probes.filter((t) => t > 0)) {
      expectRelClose(schedule.posteriorLogVarianceClipped[t], Math.log(schedule.posteriorVariance[t]), 1e-12);
    }
  });

  it('gives the posterior q(x_{t-1} | x_t, x_0) that Bayes rule gives', () => {
    // Prior x_{t-1} | x_0 ~ N(sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}); likelihood x_t | x_{t-1} ~ N(sqrt(alpha_t) x_{t-1}, beta_t).
    // Product of the two Gaussians: precision adds, mean is the precision-weighted combination.
    for (const t of probes.filter((t) => t > 0)) {
      const aPrev = abar[t - 1];
      const beta = betas[t];
      const precision = 1 / (1 - aPrev) + (1 - beta) / beta;
      const variance = 1 / precision;
      expectRelClose(schedule.posteriorVariance[t], variance, 1e-9);
      expectRelClose(schedule.posteriorMeanCoef1[t], (variance * Math.sqrt(aPrev)) / (1 - aPrev), 1e-9);
      expectRelClose(schedule.posteriorMeanCoef2[t], (variance * Math.sqrt(1 - beta)) / beta, 1e-9);
    }
    // At the first step the posterior is a point mass at x_0.
    expectRelClose(schedule.posteriorMeanCoef1[0], 1, 1e-12);
    expect(schedule.posteriorMeanCoef2[0]).toBe(0);
  });
});

describe('NoiseSchedule.cosine (Nichol & Dhariwal 2021)', () => {
  const T = 200;
  const s = 0.008;
  const f = (u: number) => Math.cos((((u / T + s) / (1 + s)) * Math.PI) / 2) ** 2;
  const schedule = NoiseSchedule.cosine(T, s);

  it('has abar at index i equal to f(i + 1) / f(0) wherever beta is not clipped', () => {
    for (const i of [0, 1, 50, 100, 150, 198]) {
      expectRelClose(schedule.alphasCumprod[i], f(i + 1) / f(0), 1e-9);
    }
  });

  it('clips beta at 0.999 (the last beta would be 1)', () => {
    expect(schedule.betas[T - 1]).toBe(0.999);
    expect(Math.max(...schedule.betas)).toBe(0.999);
    expect(schedule.betas[T - 2]).toBeLessThan(0.999);
  });
});

describe('NoiseSchedule.fromConfig and validation', () => {
  it('builds the same schedules as the static constructors', () => {
    expect(NoiseSchedule.fromConfig({ kind: 'linear', T: 50 }).betas).toEqual(NoiseSchedule.linear(50).betas);
    expect(NoiseSchedule.fromConfig({ kind: 'linear', T: 50, betaStart: 1e-3, betaEnd: 0.2 }).betas).toEqual(
      NoiseSchedule.linear(50, 1e-3, 0.2).betas,
    );
    expect(NoiseSchedule.fromConfig({ kind: 'cosine', T: 50 }).betas).toEqual(NoiseSchedule.cosine(50).betas);
  });

  it('rejects betas outside (0, 1], fewer than 2 timesteps and out-of-range timesteps', () => {
    expect(() => new NoiseSchedule(new Float64Array([0.1, 0]))).toThrow(RangeError);
    expect(() => new NoiseSchedule(new Float64Array([0.1, 1.5]))).toThrow(RangeError);
    expect(() => new NoiseSchedule(new Float64Array([0.1]))).toThrow(RangeError);
    expect(() => NoiseSchedule.linear(10).assertTimesteps([0, 10])).toThrow(RangeError);
    expect(() => NoiseSchedule.linear(10).assertTimesteps([0, 9])).not.toThrow();
  });
});

describe('qSample', () => {
  const schedule = NoiseSchedule.linear();
  const abar = cumprodOneMinus(linspace(1e-4, 0.02, 1000));

  it('is sqrt(abar_t) x0 + sqrt(1 - abar_t) noise with a per-sample t', () => {
    const t = Int32Array.from([0, 250, 999]);
    const shape: [number, number, number, number] = [3, 2, 2, 2];
    const x0Values = new Float32Array(24).map((_, i) => Math.sin(i) * 0.9);
    const noiseValues = new Rng([1, 2, 3]).fillNormal(new Float32Array(24));
    const before = tf.memory().numTensors;
    const x0 = tf.tensor4d(x0Values, shape);
    const noise = tf.tensor4d(noiseValues, shape);
    const xt = qSample(schedule, x0, t, noise);
    const got = xt.dataSync();
    for (let i = 0; i < 24; i++) {
      const a = abar[t[Math.floor(i / 8)]];
      const expected = Math.sqrt(a) * x0Values[i] + Math.sqrt(1 - a) * noiseValues[i];
      expect(Math.abs(got[i] - expected)).toBeLessThan(1e-6);
    }
    tf.dispose([x0, noise, xt]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('has mean sqrt(abar_t) x0 and variance 1 - abar_t over many noise draws', () => {
    // 4 samples, each a fixed constant image at a different t; 64x64 noise draws per sample.
    const t = Int32Array.from([5, 100, 400, 900]);
    const x0Const = [0.8, -0.5, 1, -1];
    const n = 64 * 64;
    const x0 = tf.tidy(() => tf.concat(x0Const.map((v) => tf.fill([1, 64, 64, 1], v)) as tf.Tensor4D[]));
    const noise = tf.tensor4d(new Rng([7]).fillNormal(new Float32Array(4 * n)), [4, 64, 64, 1]);
    const xt = qSample(schedule, x0, t, noise);
    const values = xt.dataSync();
    tf.dispose([x0, noise, xt]);
    for (let b = 0; b < 4; b++) {
      const slice = Array.from(values.subarray(b * n, (b + 1) * n));
      const mean = slice.reduce((s, v) => s + v, 0) / n;
      const variance = slice.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1);
      const a = abar[t[b]];
      const sd = Math.sqrt(1 - a);
      // 5 standard errors: sd/sqrt(n) for the mean, ~sd^2 sqrt(2/n) for the variance of Gaussian data.
      expect(Math.abs(mean - Math.sqrt(a) * x0Const[b])).toBeLessThan((5 * sd) / Math.sqrt(n));
      expect(Math.abs(variance - (1 - a))).toBeLessThan(5 * (1 - a) * Math.sqrt(2 / n));
    }
  });

  it('rejects mismatched shapes and timesteps', () => {
    const x0 = tf.zeros([2, 2, 2, 1]) as tf.Tensor4D;
    const noise = tf.zeros([2, 2, 2, 1]) as tf.Tensor4D;
    expect(() => qSample(schedule, x0, Int32Array.from([0]), noise)).toThrow();
    expect(() => qSample(schedule, x0, Int32Array.from([0, 1000]), noise)).toThrow(RangeError);
    tf.dispose([x0, noise]);
  });
});

describe('epsilonLoss', () => {
  it('is the mean squared error over every element of the batch', () => {
    const a = new Float32Array(2 * 3 * 3 * 2).map((_, i) => Math.cos(i * 1.7));
    const b = new Float32Array(a.length).map((_, i) => Math.sin(i * 0.3));
    let expected = 0;
    for (let i = 0; i < a.length; i++) expected += (a[i] - b[i]) ** 2;
    expected /= a.length;
    const before = tf.memory().numTensors;
    const pred = tf.tensor4d(a, [2, 3, 3, 2]);
    const noise = tf.tensor4d(b, [2, 3, 3, 2]);
    const loss = tf.tidy(() => epsilonLoss(pred, noise));
    expect(Math.abs(loss.dataSync()[0] - expected)).toBeLessThan(1e-6);
    // With the global batch's element count (three times this micro-batch), the share is a third of it.
    const share = tf.tidy(() => epsilonLoss(pred, noise, 3 * a.length));
    expect(Math.abs(share.dataSync()[0] - expected / 3)).toBeLessThan(1e-6);
    tf.dispose([pred, noise, loss, share]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
