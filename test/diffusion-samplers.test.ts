import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import {
  AncestralSampler,
  DdimSampler,
  NoiseSchedule,
  uniformDdimTimesteps,
  type EpsModel,
} from '../core/diffusion';
import { Purpose, Rng } from '../core/rng';

// Expected values are float64 computations written here from the papers (DDPM Algorithm 2, DDIM eq. 12),
// independent of core/diffusion.

beforeAll(async () => {
  await tf.setBackend('cpu');
});

type Shape = [number, number, number, number];

// A short chain with the paper's betas scaled by 1000 / T (as in Nichol & Dhariwal), so x_T is still ~pure
// noise (abar_T ~ 4e-5) while tests run in seconds on a CPU.
const T = 100;
const betas = Array.from({ length: T }, (_, i) => 1e-3 + ((0.2 - 1e-3) * i) / (T - 1));
const abar: number[] = [];
betas.reduce((p, b) => {
  abar.push(p * (1 - b));
  return p * (1 - b);
}, 1);
const abarPrev = (t: number) => (t === 0 ? 1 : abar[t - 1]);
const betaTilde = (t: number) => (betas[t] * (1 - abarPrev(t))) / (1 - abar[t]);
const schedule = NoiseSchedule.linear(T, 1e-3, 0.2);

/**
 * The exact noise prediction for data x0 ~ N(mu, s^2) per dimension: E[eps | x_t] with
 * x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, i.e. Cov(eps, x_t) / Var(x_t) (x_t - E x_t).
 */
function oracleGain(t: number, s: number): number {
  return Math.sqrt(1 - abar[t]) / (abar[t] * s * s + 1 - abar[t]);
}

function gaussianOracle(mu: number, s: number): EpsModel {
  return (x, t) =>
    tf.tidy(() => {
      const gain = tf.tensor4d(
        Array.from(t, (ti) => oracleGain(ti, s)),
        [t.length, 1, 1, 1],
      );
      const shift = tf.tensor4d(
        Array.from(t, (ti) => Math.sqrt(abar[ti]) * mu),
        [t.length, 1, 1, 1],
      );
      return tf.mul(tf.sub(x, shift), gain);
    });
}

function moments(values: ArrayLike<number>): { mean: number; std: number } {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i];
  const mean = sum / values.length;
  let ss = 0;
  for (let i = 0; i < values.length; i++) ss += (values[i] - mean) ** 2;
  return { mean, std: Math.sqrt(ss / (values.length - 1)) };
}

/** Runs `fn`, checks it left exactly `extra` more tensors alive, returns its value. */
async function expectTensorDelta<R>(extra: number, fn: () => Promise<R> | R): Promise<R> {
  const before = tf.memory().numTensors;
  const result = await fn();
  expect(tf.memory().numTensors).toBe(before + extra);
  return result;
}

describe('AncestralSampler step (Algorithm 2)', () => {
  const shape: Shape = [2, 3, 3, 2];
  const size = 36;
  const xtValues = new Rng([101]).fillNormal(new Float32Array(size));
  const epsValues = new Rng([102]).fillNormal(new Float32Array(size));

  it('Algorithm 2 mean equals the x0-parametrised posterior mean when unclipped, and both match float64', () => {
    const sampler = new AncestralSampler(schedule);
    const before = tf.memory().numTensors;
    const xt = tf.tensor4d(xtValues, shape);
    const eps = tf.tensor4d(epsValues, shape);
    for (const t of [0, 1, 37, T - 1]) {
      const direct = sampler.meanFromEps(xt, eps, t);
      const viaX0 = sampler.meanFromPredictedX0(xt, eps, t, false);
      const a = direct.dataSync();
      const b = viaX0.dataSync();
      for (let i = 0; i < size; i++) {
        const expected =
          (xtValues[i] - (betas[t] / Math.sqrt(1 - abar[t])) * epsValues[i]) / Math.sqrt(1 - betas[t]);
        expect(Math.abs(a[i] - expected)).toBeLessThan(2e-6 * (1 + Math.abs(expected)));
        expect(Math.abs(b[i] - expected)).toBeLessThan(2e-5 * (1 + Math.abs(expected)));
      }
      tf.dispose([direct, viaX0]);
    }
    tf.dispose([xt, eps]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('clips the predicted x0 to [-1, 1] before the posterior mean when asked', () => {
    const sampler = new AncestralSampler(schedule, { clipDenoised: true });
    const before = tf.memory().numTensors;
    // Scaled so that the predicted x0 leaves [-1, 1] for many elements.
    const xt = tf.tensor4d(
      xtValues.map((v) => 2 * v),
      shape,
    );
    const eps = tf.tensor4d(epsValues, shape);
    for (const t of [0, 3, 60]) {
      const noNoise = tf.zerosLike(xt);
      const clipped = sampler.step(xt, eps, t, noNoise);
      noNoise.dispose();
      const values = clipped.dataSync();
      const coef1 = (betas[t] * Math.sqrt(abarPrev(t))) / (1 - abar[t]);
      const coef2 = ((1 - abarPrev(t)) * Math.sqrt(1 - betas[t])) / (1 - abar[t]);
      let clippedCount = 0;
      for (let i = 0; i < size; i++) {
        const x = 2 * xtValues[i];
        const x0 = (x - Math.sqrt(1 - abar[t]) * epsValues[i]) / Math.sqrt(abar[t]);
        if (Math.abs(x0) > 1) clippedCount++;
        const expected = coef1 * Math.max(-1, Math.min(1, x0)) + coef2 * x;
        expect(Math.abs(values[i] - expected)).toBeLessThan(1e-5 * (1 + Math.abs(expected)));
      }
      expect(clippedCount).toBeGreaterThan(3);
      clipped.dispose();
    }
    tf.dispose([xt, eps]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('AncestralSampler.sample', () => {
  it('reproduces a float64 run of Algorithm 2 with the documented noise keys, for both variances', async () => {
    const mu = 0.2;
    const s = 0.4;
    const shape: Shape = [3, 2, 2, 1];
    const seed = 11;
    const first = 5;
    for (const variance of ['fixedlarge', 'fixedsmall'] as const) {
      const sampler = new AncestralSampler(schedule, { variance });
      const out = await expectTensorDelta(1, () =>
        sampler.sample(gaussianOracle(mu, s), shape, { seed, firstSampleIndex: first }),
      );
      const got = out.dataSync();
      out.dispose();
      for (let b = 0; b < 3; b++) {
        // x_T from key [seed, Sampling, 0, sample]; noise at 0-based t from key [seed, Sampling, t + 1, sample].
        const x = Array.from(new Rng([seed, Purpose.Sampling, 0, first + b]).fillNormal(new Float32Array(4)));
        for (let t = T - 1; t >= 0; t--) {
          const z = new Rng([seed, Purpose.Sampling, t + 1, first + b]).fillNormal(new Float32Array(4));
          const sigma = t === 0 ? 0 : Math.sqrt(variance === 'fixedlarge' ? betas[t] : betaTilde(t));
          for (let j = 0; j < 4; j++) {
            const eps = (x[j] - Math.sqrt(abar[t]) * mu) * oracleGain(t, s);
            x[j] =
              (x[j] - (betas[t] / Math.sqrt(1 - abar[t])) * eps) / Math.sqrt(1 - betas[t]) + sigma * z[j];
          }
        }
        for (let j = 0; j < 4; j++) expect(Math.abs(got[b * 4 + j] - x[j])).toBeLessThan(1e-4);
      }
    }
  });

  it('draws from the distribution predicted by the exact moment recursion on a Gaussian toy dataset', async () => {
    const mu = 0.3;
    const s = 0.5;
    const shape: Shape = [8, 32, 32, 1];
    const n = 8 * 32 * 32;
    for (const variance of ['fixedlarge', 'fixedsmall'] as const) {
      // With the oracle, x_{t-1} = A_t x_t + B_t + sigma_t z is affine-Gaussian, so mean and variance of the
      // output follow exactly from m <- A m + B, v <- A^2 v + sigma^2, starting from x_T ~ N(0, 1).
      let m = 0;
      let v = 1;
      for (let t = T - 1; t >= 0; t--) {
        const k = oracleGain(t, s);
        const c = betas[t] / Math.sqrt(1 - abar[t]);
        const A = (1 - c * k) / Math.sqrt(1 - betas[t]);
        const B = (c * k * Math.sqrt(abar[t]) * mu) / Math.sqrt(1 - betas[t]);
        m = A * m + B;
        v = A * A * v + (t === 0 ? 0 : variance === 'fixedlarge' ? betas[t] : betaTilde(t));
      }
      const predictedStd = Math.sqrt(v);
      // The predicted law is close to the data law N(mu, s^2): the mean is exact up to the tiny prior
      // mismatch, the std is off by the fixed-variance approximation at T = 100 (+1.5% for beta, -6.4% for
      // beta_tilde), which is what the paper's two variance choices trade off.
      expect(Math.abs(m - mu)).toBeLessThan(1e-3);
      expect(Math.abs(predictedStd - s)).toBeLessThan(0.08 * s);

      const sampler = new AncestralSampler(schedule, { variance });
      const out = await sampler.sample(gaussianOracle(mu, s), shape, { seed: 2024 });
      const stats = moments(out.dataSync());
      out.dispose();
      // Scalars are i.i.d. (the oracle acts per element): 4.5 standard errors.
      expect(Math.abs(stats.mean - m)).toBeLessThan((4.5 * predictedStd) / Math.sqrt(n));
      expect(Math.abs(stats.std - predictedStd)).toBeLessThan((4.5 * predictedStd) / Math.sqrt(2 * n));
    }
  });

  it('gives each sample the same trajectory whatever batch it is in, reports progress, leaks nothing', async () => {
    const sampler = new AncestralSampler(schedule);
    const model = gaussianOracle(0.1, 0.3);
    const steps: number[] = [];
    const whole = await expectTensorDelta(1, () =>
      sampler.sample(model, [4, 3, 3, 2], {
        seed: 9,
        onStep: (done, total) => {
          steps.push(done * 1000 + total);
        },
      }),
    );
    const tail = await sampler.sample(model, [2, 3, 3, 2], { seed: 9, firstSampleIndex: 2 });
    expect(Array.from(whole.dataSync().subarray(36))).toEqual(Array.from(tail.dataSync()));
    expect(steps).toEqual(Array.from({ length: T }, (_, i) => (i + 1) * 1000 + T));
    const other = await sampler.sample(model, [2, 3, 3, 2], { seed: 10, firstSampleIndex: 2 });
    expect(Array.from(other.dataSync())).not.toEqual(Array.from(tail.dataSync()));
    tf.dispose([whole, tail, other]);
  });

  it('disposes what the model returns, keeps the caller xT, and cleans up when the model throws', async () => {
    const sampler = new AncestralSampler(schedule);
    const xT = tf.ones([1, 2, 2, 1]) as tf.Tensor4D;
    const out = await expectTensorDelta(1, () =>
      sampler.sample(gaussianOracle(0, 1), [1, 2, 2, 1], { seed: 1, xT }),
    );
    expect(xT.isDisposed).toBe(false);
    out.dispose();
    const wrongShape: EpsModel = () => tf.zeros([1, 2, 2, 2]) as tf.Tensor4D;
    await expectTensorDelta(0, () =>
      expect(sampler.sample(wrongShape, [1, 2, 2, 1], { seed: 1 })).rejects.toThrow(/shape/),
    );
    xT.dispose();
  });
});

describe('DdimSampler', () => {
  it("uses the DDIM code's uniform timesteps i * floor(T / S)", () => {
    expect(Array.from(uniformDdimTimesteps(1000, 50))).toEqual(Array.from({ length: 50 }, (_, i) => i * 20));
    expect(Array.from(uniformDdimTimesteps(1000, 1000))).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(Array.from(uniformDdimTimesteps(1000, 30))).toEqual(Array.from({ length: 30 }, (_, i) => i * 33));
    expect(() => uniformDdimTimesteps(1000, 0)).toThrow(RangeError);
    expect(() => uniformDdimTimesteps(1000, 1001)).toThrow(RangeError);
    // eta = 5 asks for more noise than 1 - abar_prev allows.
    expect(() => new DdimSampler(schedule, { steps: 10, eta: 5 })).toThrow(RangeError);
    expect(() => new DdimSampler(schedule, { steps: 10, eta: 1 })).not.toThrow();
  });

  /** Float64 DDIM update coefficients at position i of tau (x_prev = A x + B + sigma z with the oracle). */
  function ddimAffine(tau: number[], i: number, eta: number, mu: number, s: number) {
    const t = tau[i];
    const aPrev = i === 0 ? 1 : abar[tau[i - 1]];
    const sigma = eta * Math.sqrt(((1 - aPrev) / (1 - abar[t])) * (1 - abar[t] / aPrev));
    const k = oracleGain(t, s);
    // eps = k (x - sqrt(abar) mu); x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)
    const x0A = (1 - Math.sqrt(1 - abar[t]) * k) / Math.sqrt(abar[t]);
    const x0B = Math.sqrt(1 - abar[t]) * k * mu;
    const dir = Math.sqrt(1 - aPrev - sigma * sigma);
    return {
      A: Math.sqrt(aPrev) * x0A + dir * k,
      B: Math.sqrt(aPrev) * x0B - dir * k * Math.sqrt(abar[t]) * mu,
      sigma,
    };
  }

  it('with eta = 0 is a deterministic function of x_T that matches float64 DDIM exactly', async () => {
    const mu = 0.3;
    const s = 0.5;
    const shape: Shape = [2, 4, 4, 1];
    const xTValues = new Rng([55]).fillNormal(new Float32Array(32));
    const xT = tf.tensor4d(xTValues, shape);
    const sampler = new DdimSampler(schedule, { steps: 20, eta: 0 });
    const tau = Array.from(sampler.timesteps);
    const a = await expectTensorDelta(1, () => sampler.sample(gaussianOracle(mu, s), shape, { seed: 1, xT }));
    const b = await sampler.sample(gaussianOracle(mu, s), shape, { seed: 2, xT });
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    const got = a.dataSync();
    for (let j = 0; j < 32; j++) {
      let x = xTValues[j];
      for (let i = tau.length - 1; i >= 0; i--) {
        const { A, B } = ddimAffine(tau, i, 0, mu, s);
        x = A * x + B;
      }
      expect(Math.abs(got[j] - x)).toBeLessThan(1e-4);
    }
    // Same seed without an explicit x_T: still reproducible.
    const c = await sampler.sample(gaussianOracle(mu, s), shape, { seed: 3 });
    const d = await sampler.sample(gaussianOracle(mu, s), shape, { seed: 3 });
    expect(Array.from(c.dataSync())).toEqual(Array.from(d.dataSync()));
    tf.dispose([a, b, c, d, xT]);
  });

  it('with 50 steps and eta in {0, 1} draws from the distribution the exact recursion predicts', async () => {
    const mu = 0.3;
    const s = 0.5;
    const shape: Shape = [8, 32, 32, 1];
    const n = 8 * 32 * 32;
    for (const eta of [0, 1]) {
      const sampler = new DdimSampler(schedule, { steps: 50, eta });
      const tau = Array.from(sampler.timesteps);
      let m = 0;
      let v = 1;
      for (let i = tau.length - 1; i >= 0; i--) {
        const { A, B, sigma } = ddimAffine(tau, i, eta, mu, s);
        m = A * m + B;
        v = A * A * v + sigma * sigma;
      }
      const predictedStd = Math.sqrt(v);
      // 50 of 100 steps: predicted std 0.473 (eta = 0) and 0.444 (eta = 1) against s = 0.5, the known
      // few-step bias of DDIM, larger with noise; the mean stays within 1e-3 of mu.
      expect(Math.abs(m - mu)).toBeLessThan(2e-3);
      expect(Math.abs(predictedStd - s)).toBeLessThan(0.15 * s);

      const out = await expectTensorDelta(1, () =>
        sampler.sample(gaussianOracle(mu, s), shape, { seed: 77 }),
      );
      const stats = moments(out.dataSync());
      out.dispose();
      expect(Math.abs(stats.mean - m)).toBeLessThan((4.5 * predictedStd) / Math.sqrt(n));
      expect(Math.abs(stats.std - predictedStd)).toBeLessThan((4.5 * predictedStd) / Math.sqrt(2 * n));
    }
  });

  it('with eta = 1 over all T steps is ancestral sampling with beta_tilde, clipped or not', async () => {
    // DDIM paper, section 4.1: eta = 1 gives sigma^2 = beta_tilde and the DDPM posterior mean. Both samplers
    // draw their noise from the same keys, so the outputs must agree to float32 rounding.
    const shape: Shape = [4, 8, 8, 1];
    const model = gaussianOracle(0.6, 0.5); // data beyond 1 so that clipping acts
    for (const clipDenoised of [false, true]) {
      const ddim = new DdimSampler(schedule, { steps: T, eta: 1, clipDenoised });
      const ancestral = new AncestralSampler(schedule, { variance: 'fixedsmall', clipDenoised });
      const a = await ddim.sample(model, shape, { seed: 5 });
      const b = await ancestral.sample(model, shape, { seed: 5 });
      const av = a.dataSync();
      const bv = b.dataSync();
      let maxDiff = 0;
      for (let i = 0; i < av.length; i++) maxDiff = Math.max(maxDiff, Math.abs(av[i] - bv[i]));
      expect(maxDiff).toBeLessThan(1e-4);
      if (clipDenoised) expect(Math.max(...Array.from(av))).toBeLessThanOrEqual(1 + 1e-6);
      else expect(Math.max(...Array.from(av))).toBeGreaterThan(1);
      tf.dispose([a, b]);
    }
  });

  it('gives each sample the same trajectory whatever batch it is in (eta = 1)', async () => {
    const sampler = new DdimSampler(schedule, { steps: 10, eta: 1 });
    const model = gaussianOracle(0, 0.5);
    const whole = await sampler.sample(model, [3, 2, 2, 1], { seed: 4 });
    const last = await sampler.sample(model, [1, 2, 2, 1], { seed: 4, firstSampleIndex: 2 });
    expect(Array.from(whole.dataSync().subarray(8))).toEqual(Array.from(last.dataSync()));
    tf.dispose([whole, last]);
  });
});
