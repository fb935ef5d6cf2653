import type { DiffusionConfig } from '../presets';

/**
 * The forward-process noise schedule of DDPM (Ho et al. 2020) and every per-timestep constant derived from it.
 *
 * Everything is computed once in float64, as in the reference code (`diffusion_utils_2.py`): products of
 * 1000 factors close to 1 and differences like 1 - abar lose most of their digits in float32. Tensors only
 * ever see these constants after gathering, rounded once to float32.
 *
 * Timesteps are 0-based indices 0..T-1, like the reference code: index t here is the paper's timestep t + 1,
 * so `alphasCumprod[0]` is abar_1 = 1 - beta_1 and x_t at index t is x0 diffused for t + 1 steps.
 */

export type ScheduleConfig =
  | { kind: 'linear'; T: number; betaStart?: number; betaEnd?: number }
  | { kind: 'cosine'; T: number; s?: number; maxBeta?: number };

export class NoiseSchedule {
  readonly numTimesteps: number;
  readonly betas: Float64Array;
  readonly alphas: Float64Array;
  /** abar_t = prod_{s <= t} alpha_s. */
  readonly alphasCumprod: Float64Array;
  /** abar_{t-1}, with abar_{-1} = 1 (no noise before the first step). */
  readonly alphasCumprodPrev: Float64Array;
  readonly sqrtAlphasCumprod: Float64Array;
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  /** log(1 - abar_t): the log-variance of q(x_t | x_0). */
  readonly logOneMinusAlphasCumprod: Float64Array;
  readonly sqrtRecipAlphasCumprod: Float64Array;
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  /** beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), the variance of q(x_{t-1} | x_t, x_0); 0 at t = 0. */
  readonly posteriorVariance: Float64Array;
  /** log beta_tilde_t with index 0 (where beta_tilde is 0) replaced by beta_tilde_1, as in the reference code. */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** Posterior mean of q(x_{t-1} | x_t, x_0) is coef1 x_0 + coef2 x_t. */
  readonly posteriorMeanCoef1: Float64Array;
  readonly posteriorMeanCoef2: Float64Array;

  constructor(betas: Float64Array) {
    const T = betas.length;
    // T >= 2 because the clipped posterior log-variance borrows beta_tilde at index 1.
    if (T < 2) throw new RangeError(`a noise schedule needs at least 2 timesteps, got ${T}`);
    for (let t = 0; t < T; t++) {
      if (!(betas[t] > 0 && betas[t] <= 1))
        throw new RangeError(`beta[${t}] = ${betas[t]} is outside (0, 1]`);
    }
    this.numTimesteps = T;
    this.betas = Float64Array.from(betas);
    const make = () => new Float64Array(T);
    this.alphas = make();
    this.alphasCumprod = make();
    this.alphasCumprodPrev = make();
    this.sqrtAlphasCumprod = make();
    this.sqrtOneMinusAlphasCumprod = make();
    this.logOneMinusAlphasCumprod = make();
    this.sqrtRecipAlphasCumprod = make();
    this.sqrtRecipm1AlphasCumprod = make();
    this.posteriorVariance = make();
    this.posteriorLogVarianceClipped = make();
    this.posteriorMeanCoef1 = make();
    this.posteriorMeanCoef2 = make();

    let cumprod = 1;
    for (let t = 0; t < T; t++) {
      const beta = this.betas[t];
      const alpha = 1 - beta;
      const abarPrev = cumprod;
      cumprod *= alpha;
      const abar = cumprod;
      this.alphas[t] = alpha;
      this.alphasCumprod[t] = abar;
      this.alphasCumprodPrev[t] = abarPrev;
      this.sqrtAlphasCumprod[t] = Math.sqrt(abar);
      this.sqrtOneMinusAlphasCumprod[t] = Math.sqrt(1 - abar);
      this.logOneMinusAlphasCumprod[t] = Math.log(1 - abar);
      this.sqrtRecipAlphasCumprod[t] = Math.sqrt(1 / abar);
      this.sqrtRecipm1AlphasCumprod[t] = Math.sqrt(1 / abar - 1);
      this.posteriorVariance[t] = (beta * (1 - abarPrev)) / (1 - abar);
      this.posteriorMeanCoef1[t] = (beta * Math.sqrt(abarPrev)) / (1 - abar);
      this.posteriorMeanCoef2[t] = ((1 - abarPrev) * Math.sqrt(alpha)) / (1 - abar);
    }
    for (let t = 0; t < T; t++) {
      this.posteriorLogVarianceClipped[t] = Math.log(this.posteriorVariance[t === 0 ? 1 : t]);
    }
  }

  /** The paper's schedule: betas evenly spaced from `start` to `end` (numpy.linspace semantics). */
  static linear(T = 1000, start = 1e-4, end = 0.02): NoiseSchedule {
    assertTimestepCount(T);
    const betas = new Float64Array(T);
    const step = (end - start) / (T - 1);
    for (let i = 0; i < T; i++) betas[i] = i === T - 1 ? end : start + i * step;
    return new NoiseSchedule(betas);
  }

  /**
   * Nichol & Dhariwal (2021): abar(u) = f(u) / f(0) with f(u) = cos²((u / T + s) / (1 + s) · π/2), and
   * beta_i = 1 - abar(i + 1) / abar(i), clipped at `maxBeta` because beta would reach 1 at u = T.
   */
  static cosine(T: number, s = 0.008, maxBeta = 0.999): NoiseSchedule {
    assertTimestepCount(T);
    const f = (u: number) => Math.cos((((u / T + s) / (1 + s)) * Math.PI) / 2) ** 2;
    const betas = new Float64Array(T);
    for (let i = 0; i < T; i++) betas[i] = Math.min(1 - f(i + 1) / f(i), maxBeta);
    return new NoiseSchedule(betas);
  }

  static fromConfig(config: ScheduleConfig): NoiseSchedule {
    switch (config.kind) {
      case 'linear':
        return NoiseSchedule.linear(config.T, config.betaStart ?? 1e-4, config.betaEnd ?? 0.02);
      case 'cosine':
        return NoiseSchedule.cosine(config.T, config.s ?? 0.008, config.maxBeta ?? 0.999);
      default: {
        const unknown: never = config;
        throw new Error(`unknown noise schedule kind ${JSON.stringify(unknown)}`);
      }
    }
  }

  /** Throws unless every entry is an integer timestep index in 0..T-1. */
  assertTimesteps(t: ArrayLike<number>): void {
    for (let i = 0; i < t.length; i++) {
      const ti = t[i];
      if (!Number.isInteger(ti) || ti < 0 || ti >= this.numTimesteps) {
        throw new RangeError(`timestep ${ti} is outside 0..${this.numTimesteps - 1}`);
      }
    }
  }
}

function assertTimestepCount(T: number): void {
  if (!Number.isInteger(T) || T < 2) throw new RangeError(`T must be an integer >= 2, got ${T}`);
}

/** The noise schedule a run's diffusion settings describe. */
export function noiseScheduleFor(d: DiffusionConfig): NoiseSchedule {
  return d.schedule === 'linear'
    ? NoiseSchedule.fromConfig({ kind: 'linear', T: d.timesteps, betaStart: d.betaStart, betaEnd: d.betaEnd })
    : NoiseSchedule.fromConfig({ kind: 'cosine', T: d.timesteps });
}
