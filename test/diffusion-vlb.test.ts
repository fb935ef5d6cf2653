import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import {
  approxStandardNormalCdf,
  discretizedGaussianLogLikelihood,
  fullVlb,
  NoiseSchedule,
  normalKl,
  priorBpd,
  vlbTerms,
  type EpsModel,
  type VarianceType,
} from '../core/diffusion';
import { Rng } from '../core/rng';

// Expected values are float64 computations written here from the DDPM paper and its reference code
// (diffusion_utils_2.py, utils.py), independent of core/diffusion.

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const LN2 = Math.log(2);

/** Runs `fn`, checks it left exactly `extra` more tensors alive, returns its value. */
async function expectTensorDelta<R>(extra: number, fn: () => Promise<R> | R): Promise<R> {
  const before = tf.memory().numTensors;
  const result = await fn();
  expect(tf.memory().numTensors).toBe(before + extra);
  return result;
}

function kl64(m1: number, lv1: number, m2: number, lv2: number): number {
  return 0.5 * (-1 + lv2 - lv1 + Math.exp(lv1 - lv2) + (m1 - m2) ** 2 * Math.exp(-lv2));
}

function approxCdf64(x: number): number {
  return 0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Reference code's discretized_gaussian_log_likelihood, one element, float64. */
function discretizedLogLik64(x: number, mean: number, logScale: number): number {
  const invStd = Math.exp(-logScale);
  const cdfPlus = approxCdf64(invStd * (x - mean + 1 / 255));
  const cdfMin = approxCdf64(invStd * (x - mean - 1 / 255));
  if (x < -0.999) return Math.log(Math.max(cdfPlus, 1e-12));
  if (x > 0.999) return Math.log(Math.max(1 - cdfMin, 1e-12));
  return Math.log(Math.max(cdfPlus - cdfMin, 1e-12));
}

/** Complementary error function, Numerical Recipes' erfcc (fractional error < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -1.26551223 +
    t *
      (1.00002368 +
        t *
          (0.37409196 +
            t *
              (0.09678418 +
                t *
                  (-0.18628806 +
                    t *
                      (0.27886807 +
                        t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const r = t * Math.exp(-z * z + poly);
  return x >= 0 ? r : 2 - r;
}
const normalCdf = (x: number) => 0.5 * erfc(-x / Math.SQRT2);

const binCenter = (k: number) => -1 + (2 * k) / 255;

describe('normalKl', () => {
  it('matches the float64 KL between Gaussians elementwise, with broadcasting of plain numbers', () => {
    const rng = new Rng([1]);
    const n = 64;
    const m1 = Float32Array.from({ length: n }, () => 2 * rng.normal());
    const m2 = Float32Array.from({ length: n }, () => 2 * rng.normal());
    const lv1 = Float32Array.from({ length: n }, () => rng.normal());
    const lv2 = Float32Array.from({ length: n }, () => rng.normal());
    const before = tf.memory().numTensors;
    const [a, b, c, d] = [m1, lv1, m2, lv2].map((v) => tf.tensor1d(v));
    const kl = normalKl(a, b, c, d);
    const klToStandard = normalKl(a, b, 0, 0);
    const values = kl.dataSync();
    const valuesStd = klToStandard.dataSync();
    for (let i = 0; i < n; i++) {
      const expected = kl64(m1[i], lv1[i], m2[i], lv2[i]);
      expect(Math.abs(values[i] - expected)).toBeLessThan(1e-5 * (1 + expected));
      const expectedStd = kl64(m1[i], lv1[i], 0, 0);
      expect(Math.abs(valuesStd[i] - expectedStd)).toBeLessThan(1e-5 * (1 + expectedStd));
    }
    tf.dispose([a, b, c, d, kl, klToStandard]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('discretized Gaussian decoder', () => {
  it('uses the tanh CDF of the reference, which is within 3e-4 of the exact normal CDF', () => {
    const xs = Array.from({ length: 161 }, (_, i) => -8 + i * 0.1);
    const cdf = tf.tidy(() => approxStandardNormalCdf(tf.tensor1d(xs)).dataSync());
    xs.forEach((x, i) => {
      expect(Math.abs(cdf[i] - approxCdf64(x))).toBeLessThan(1e-6);
      expect(Math.abs(approxCdf64(x) - normalCdf(x))).toBeLessThan(3e-4);
    });
  });

  it('matches the float64 log-likelihood in the bulk, the tails and the edge bins', () => {
    const xs: number[] = [];
    const means: number[] = [];
    const logScales: number[] = [];
    const rng = new Rng([2]);
    for (let i = 0; i < 600; i++) {
      const k = i < 40 ? [0, 255, 1, 254][i % 4] : rng.int(256);
      const scale = [0.003, 0.01, 0.05, 0.2, 1][i % 5];
      // Means up to 7 standard deviations away: bin masses from ~1 down to the 1e-12 floor, on both sides.
      xs.push(binCenter(k));
      means.push(binCenter(k) + scale * 14 * (rng.uniform() - 0.5));
      logScales.push(Math.log(scale));
    }
    const got = tf.tidy(() =>
      discretizedGaussianLogLikelihood(
        tf.tensor1d(xs),
        tf.tensor1d(means),
        tf.tensor1d(logScales),
      ).dataSync(),
    );
    let tailCases = 0;
    for (let i = 0; i < xs.length; i++) {
      const expected = discretizedLogLik64(
        Math.fround(xs[i]),
        Math.fround(means[i]),
        Math.fround(logScales[i]),
      );
      if (expected < Math.log(1e-5) && expected > Math.log(1e-11)) tailCases++;
      // Tail bins above the mean are where the reference's float32 cdf_plus - cdf_min would lose all digits.
      expect(Math.abs(got[i] - expected)).toBeLessThan(1e-4 + 1e-5 * Math.abs(expected));
    }
    expect(tailCases).toBeGreaterThan(30);
  });

  it('gives 256 bin probabilities that sum to 1', () => {
    const centers = Array.from({ length: 256 }, (_, k) => binCenter(k));
    for (const mean of [-0.7, 0, 0.33, 0.99, 1.2]) {
      for (const scale of [0.01, 0.1, 0.5]) {
        const total = tf.tidy(() => {
          const x = tf.tensor1d(centers);
          const logProbs = discretizedGaussianLogLikelihood(x, tf.fill([256], mean), Math.log(scale));
          return tf.sum(tf.exp(logProbs)).dataSync()[0];
        });
        expect(Math.abs(total - 1)).toBeLessThan(1e-4);
      }
    }
  });
});

describe('priorBpd (L_T)', () => {
  it('is ~1e-5 bits/dim for the paper schedule, matching the float64 closed form', async () => {
    const schedule = NoiseSchedule.linear(1000, 1e-4, 0.02);
    let abarT = 1;
    for (let i = 0; i < 1000; i++) abarT *= 1 - (1e-4 + ((0.02 - 1e-4) * i) / 999);
    // KL(N(sqrt(a) x, 1 - a) || N(0, 1)) = 0.5 (-log(1 - a) - a + a x^2) per dimension.
    const closedForm = (x2mean: number) => (0.5 * (-Math.log1p(-abarT) - abarT + abarT * x2mean)) / LN2;
    const rng = new Rng([3]);
    const n = 2 * 8 * 8 * 3;
    const values = Float32Array.from({ length: n }, (_, i) =>
      i < n / 2 ? (i % 2 ? 1 : -1) : binCenter(rng.int(256)),
    );
    const x0 = tf.tensor4d(values, [2, 8, 8, 3]);
    const prior = await expectTensorDelta(1, () => priorBpd(schedule, x0));
    const got = prior.dataSync();
    tf.dispose([x0, prior]);
    for (let b = 0; b < 2; b++) {
      const slice = values.subarray((b * n) / 2, ((b + 1) * n) / 2);
      const x2mean = slice.reduce((s, v) => s + v * v, 0) / slice.length;
      expect(Math.abs(got[b] - closedForm(x2mean))).toBeLessThan(1e-4 * closedForm(x2mean));
    }
    // Saturated +-1 data: 0.5 * 4.04e-5 / ln 2 = 2.91e-5 bits/dim.
    expect(got[0]).toBeGreaterThan(2.9e-5);
    expect(got[0]).toBeLessThan(2.92e-5);
    expect(got[1]).toBeGreaterThan(1e-6);
    expect(got[1]).toBeLessThan(got[0]);
  });
});

// The bound on a short chain: the paper's betas scaled by 1000 / T so that x_T is still ~pure noise.
const T = 100;
const betas = Array.from({ length: T }, (_, i) => 1e-3 + ((0.2 - 1e-3) * i) / (T - 1));
const abar: number[] = [];
betas.reduce((p, b) => {
  abar.push(p * (1 - b));
  return p * (1 - b);
}, 1);
const abarPrev = (t: number) => (t === 0 ? 1 : abar[t - 1]);
const betaTilde = (t: number) => (betas[t] * (1 - abarPrev(t))) / (1 - abar[t]);
const coef1 = (t: number) => (betas[t] * Math.sqrt(abarPrev(t))) / (1 - abar[t]);
const coef2 = (t: number) => ((1 - abarPrev(t)) * Math.sqrt(1 - betas[t])) / (1 - abar[t]);
/** log sigma_t^2 of p; index 0 borrows beta_tilde_1 for both choices (reference code). */
const modelLogVar = (t: number, type: VarianceType) =>
  Math.log(t === 0 ? betaTilde(1) : type === 'fixedlarge' ? betas[t] : betaTilde(t));
const schedule = NoiseSchedule.linear(T, 1e-3, 0.2);

/** E[eps | x_t] for data N(mu, s^2) per dimension: the best possible noise predictor. */
function gaussianOracle(mu: number, s: number): EpsModel {
  return (x, t) =>
    tf.tidy(() => {
      const gain = Array.from(t, (ti) => Math.sqrt(1 - abar[ti]) / (abar[ti] * s * s + 1 - abar[ti]));
      const shift = Array.from(t, (ti) => Math.sqrt(abar[ti]) * mu);
      return tf.mul(
        tf.sub(x, tf.tensor4d(shift, [t.length, 1, 1, 1])),
        tf.tensor4d(gain, [t.length, 1, 1, 1]),
      );
    });
}

function gaussianData(
  seed: number,
  shape: [number, number, number, number],
  mu: number,
  s: number,
  quantize: boolean,
) {
  const rng = new Rng([seed]);
  const values = Float32Array.from({ length: shape.reduce((a, b) => a * b) }, () => {
    const x = mu + s * rng.normal();
    return quantize ? binCenter(Math.max(0, Math.min(255, Math.round(((x + 1) * 255) / 2)))) : x;
  });
  return values;
}

describe('vlbTerms', () => {
  it('matches a float64 evaluation of L_0 and L_{t-1} per sample, for both variances, clipped or not', () => {
    const shape: [number, number, number, number] = [6, 3, 3, 2];
    const dims = 18;
    const t = Int32Array.from([0, 1, 50, 99, 0, 7]);
    const x0Values = gaussianData(4, shape, 0.2, 0.6, true);
    const noiseValues = new Rng([5]).fillNormal(new Float32Array(6 * dims));
    // Deliberately imperfect model, so the KL terms are far from 0.
    const model: EpsModel = (x) => tf.tidy(() => tf.add(tf.mul(x, 0.7), 0.1));
    const x0 = tf.tensor4d(x0Values, shape);
    const noise = tf.tensor4d(noiseValues, shape);
    for (const type of ['fixedlarge', 'fixedsmall'] as const) {
      for (const clipDenoised of [false, true]) {
        const terms = vlbTerms(schedule, model, x0, t, noise, type, { clipDenoised });
        const got = terms.dataSync();
        terms.dispose();
        for (let b = 0; b < 6; b++) {
          const ti = t[b];
          let sum = 0;
          for (let j = 0; j < dims; j++) {
            const x = x0Values[b * dims + j];
            const xt = Math.sqrt(abar[ti]) * x + Math.sqrt(1 - abar[ti]) * noiseValues[b * dims + j];
            const eps = Math.fround(Math.fround(xt) * 0.7) + 0.1;
            let x0Hat = (xt - Math.sqrt(1 - abar[ti]) * eps) / Math.sqrt(abar[ti]);
            if (clipDenoised) x0Hat = Math.max(-1, Math.min(1, x0Hat));
            const modelMean = coef1(ti) * x0Hat + coef2(ti) * xt;
            const lv = modelLogVar(ti, type);
            sum +=
              ti === 0
                ? -discretizedLogLik64(x, modelMean, 0.5 * lv)
                : kl64(coef1(ti) * x + coef2(ti) * xt, Math.log(betaTilde(ti)), modelMean, lv);
          }
          const expected = sum / dims / LN2;
          expect(Math.abs(got[b] - expected)).toBeLessThan(1e-4 * expected);
        }
      }
    }
    tf.dispose([x0, noise]);
  });

  it('leaks nothing, including when the model is called on a single kind of term', async () => {
    const x0 = tf.zeros([2, 2, 2, 1]) as tf.Tensor4D;
    const noise = tf.ones([2, 2, 2, 1]) as tf.Tensor4D;
    for (const t of [
      [0, 0],
      [3, 4],
      [0, 5],
    ]) {
      const terms = await expectTensorDelta(1, () =>
        vlbTerms(schedule, gaussianOracle(0, 1), x0, Int32Array.from(t), noise),
      );
      terms.dispose();
    }
    tf.dispose([x0, noise]);
  });
});

describe('fullVlb on a Gaussian toy dataset with the exact (oracle) noise predictor', () => {
  const shape: [number, number, number, number] = [16, 16, 16, 1];

  it('averages to the float64 expectation of every term given the data (no clipping)', async () => {
    const mu = 0.1;
    const s = 0.3;
    const x0Values = gaussianData(6, shape, mu, s, true);
    const x0 = tf.tensor4d(x0Values, shape);
    const result = await expectTensorDelta(0, () =>
      fullVlb(schedule, gaussianOracle(mu, s), x0, {
        seed: 8,
        clipDenoised: false,
        varianceType: 'fixedlarge',
      }),
    );
    x0.dispose();
    const average = (values: Float64Array) => values.reduce((a, v) => a + v, 0) / values.length;
    // Expectation over the noise, given the data. The oracle's x0 prediction is affine in x_t:
    //   x0_hat = mu + a (x_t - sqrt(abar) mu),  a = sqrt(abar) s^2 / (abar s^2 + 1 - abar),
    // so E[(x0 - x0_hat)^2 | x0] = (1 - a sqrt(abar))^2 (x0 - mu)^2 + a^2 (1 - abar) for any x0, and with
    // mean_q - mean_p = coef1 (x0 - x0_hat):
    //   E[L_{t-1} | x0] = 0.5 (expm1(d) - d + coef1^2 E[(x0 - x0_hat)^2 | x0] / sigma_t^2) / ln 2,
    // d = log(beta_tilde_t / sigma_t^2).
    const gain = (t: number) => (Math.sqrt(abar[t]) * s * s) / (abar[t] * s * s + 1 - abar[t]);
    let expectedTotal = 0;
    let observedTotal = 0;
    for (let k = 1; k < T; k++) {
      const t = result.timesteps[k];
      const a = gain(t);
      let meanSquaredError = 0;
      for (const x of x0Values)
        meanSquaredError += (1 - a * Math.sqrt(abar[t])) ** 2 * (x - mu) ** 2 + a * a * (1 - abar[t]);
      meanSquaredError /= x0Values.length;
      const sigma2 = Math.exp(modelLogVar(t, 'fixedlarge'));
      const d = Math.log(betaTilde(t) / sigma2);
      const expected = (0.5 * (Math.expm1(d) - d + (coef1(t) ** 2 * meanSquaredError) / sigma2)) / LN2;
      const observed = average(Float64Array.from(result.termsBpd[k]));
      // Each term averages 4096 squared Gaussian errors: relative s.e. about sqrt(2 / 4096) = 2.2%.
      expect(Math.abs(observed - expected)).toBeLessThan(0.1 * expected);
      expectedTotal += expected;
      observedTotal += observed;
    }
    // L_0: at t = 0 the model mean is x0_hat itself (coef1 = 1, coef2 = 0). Integrate the decoder NLL over
    // the noise n numerically, once per distinct data value (256 at most).
    const t0 = 0;
    const logScale = 0.5 * modelLogVar(t0, 'fixedlarge');
    const decoderNllGiven = new Map<number, number>();
    const step = 0.01;
    for (const x of x0Values) {
      if (decoderNllGiven.has(x)) continue;
      let integral = 0;
      for (let n = -8; n <= 8; n += step) {
        const xt = Math.sqrt(abar[t0]) * x + Math.sqrt(1 - abar[t0]) * n;
        const x0Hat = mu + gain(t0) * (xt - Math.sqrt(abar[t0]) * mu);
        integral +=
          (-discretizedLogLik64(x, x0Hat, logScale) * Math.exp(-0.5 * n * n) * step) / Math.sqrt(2 * Math.PI);
      }
      decoderNllGiven.set(x, integral);
    }
    const expectedDecoder =
      x0Values.reduce((acc, x) => acc + decoderNllGiven.get(x)!, 0) / x0Values.length / LN2;
    const observedDecoder = average(result.termsBpd[0]);
    expect(Math.abs(observedDecoder - expectedDecoder)).toBeLessThan(0.02 * expectedDecoder);
    // L_T: KL(N(sqrt(abar) x0, 1 - abar) || N(0, 1)), exact given the data.
    const aT = abar[T - 1];
    const expectedPrior =
      x0Values.reduce((acc, x) => acc + 0.5 * (-Math.log1p(-aT) - aT + aT * x * x), 0) /
      x0Values.length /
      LN2;
    expect(Math.abs(average(result.priorBpd) - expectedPrior)).toBeLessThan(1e-3 * expectedPrior);
    // The 99 KL terms have independent noise, so their sum is tighter than each term: its relative s.e. is
    // about 0.4% (measured over seeds), dominated by the large terms at small t.
    expect(Math.abs(observedTotal - expectedTotal)).toBeLessThan(0.02 * expectedTotal);
    const expectedBound = expectedPrior + expectedDecoder + expectedTotal;
    expect(Math.abs(average(result.totalBpd) - expectedBound)).toBeLessThan(0.015 * expectedBound);
  });

  it('bounds the entropy of the discretized data from above, and gets worse for worse models', async () => {
    const mu = 0.1;
    const s = 0.3;
    const x0Values = gaussianData(9, shape, mu, s, true);
    const x0 = tf.tensor4d(x0Values, shape);
    // Entropy of the quantized data in bits/dim: no model has a lower expected NLL, and the bound is >= NLL.
    const binProbability = (k: number) =>
      (k === 255 ? 1 : normalCdf((binCenter(k) + 1 / 255 - mu) / s)) -
      (k === 0 ? 0 : normalCdf((binCenter(k) - 1 / 255 - mu) / s));
    let entropy = 0;
    for (let k = 0; k < 256; k++) {
      const p = binProbability(k);
      if (p > 0) entropy -= p * Math.log2(p);
    }
    // The data are a finite sample: their true NLL fluctuates around the entropy with this standard error.
    const trueNll = Array.from(x0Values, (x) => -Math.log2(binProbability(Math.round(((x + 1) * 255) / 2))));
    const nllMean = trueNll.reduce((a, v) => a + v, 0) / trueNll.length;
    const nllStandardError = Math.sqrt(
      trueNll.reduce((a, v) => a + (v - nllMean) ** 2, 0) / (trueNll.length - 1) / trueNll.length,
    );

    const means: number[] = [];
    // Oracles for N(mu + shift, s^2): worse noise predictors as the shift grows. Same noise for all three.
    for (const shift of [0, 0.1, 0.3]) {
      const result = await expectTensorDelta(0, () =>
        fullVlb(schedule, gaussianOracle(mu + shift, s), x0, { seed: 10 }),
      );
      for (let b = 0; b < shape[0]; b++) {
        let sum = result.priorBpd[b];
        for (const terms of result.termsBpd) {
          // Every term is a KL or -log of a probability: never negative.
          expect(terms[b]).toBeGreaterThanOrEqual(0);
          sum += terms[b];
        }
        expect(result.priorBpd[b]).toBeGreaterThanOrEqual(0);
        expect(Math.abs(result.totalBpd[b] - sum)).toBeLessThan(1e-9 * sum);
      }
      means.push(result.totalBpd.reduce((a, v) => a + v, 0) / shape[0]);
    }
    x0.dispose();
    // Measured: 7.41 bits/dim for the oracle against an entropy of 7.30 (T = 100, fixed variance beta).
    expect(means[0]).toBeGreaterThan(entropy - 4 * nllStandardError);
    expect(means[1]).toBeGreaterThan(means[0]);
    expect(means[2]).toBeGreaterThan(means[1]);
  });

  it('estimates the total from a subset of timesteps with the decoder term exact', async () => {
    const x0 = tf.tensor4d(gaussianData(11, [4, 4, 4, 1], 0, 0.5, true), [4, 4, 4, 1]);
    const model = gaussianOracle(0, 0.5);
    const full = await fullVlb(schedule, model, x0, { seed: 12 });
    const subset = await fullVlb(schedule, model, x0, { seed: 12, timesteps: [60, 10, 30, 10] });
    // Noise is keyed by timestep, so the subset's terms are the full run's terms at the same timesteps.
    expect(Array.from(subset.timesteps)).toEqual([0, 10, 30, 60]);
    subset.timesteps.forEach((t, k) => expect(subset.termsBpd[k]).toEqual(full.termsBpd[t]));
    for (let b = 0; b < 4; b++) {
      const klMean = (subset.termsBpd[1][b] + subset.termsBpd[2][b] + subset.termsBpd[3][b]) / 3;
      const expected = full.priorBpd[b] + full.termsBpd[0][b] + (T - 1) * klMean;
      expect(Math.abs(subset.totalBpd[b] - expected)).toBeLessThan(1e-9 * expected);
    }
    await expect(fullVlb(schedule, model, x0, { seed: 12, timesteps: [0] })).rejects.toThrow(RangeError);
    await expect(fullVlb(schedule, model, x0, { seed: 12, timesteps: [100] })).rejects.toThrow(RangeError);
    x0.dispose();
  });
});
