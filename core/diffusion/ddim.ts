import * as tf from '@tensorflow/tfjs-core';

import { Purpose } from '../rng';
import { uniformTimesteps } from './coefficients';
import { noiseStepKey, standardNormalBatch } from './noise';
import { clipToDataRange, predictEpsFromX0, predictX0FromEps } from './posterior';
import { predictEps, runReverseProcess } from './reverse-loop';
import type { EpsModel, SampleOptions, Sampler } from './sampler';
import type { NoiseSchedule } from './schedule';

export interface DdimSamplerOptions {
  /** Number of model evaluations S (1..T). */
  steps: number;
  /** 0: deterministic DDIM; 1: the DDPM posterior variance (beta_tilde) over the visited timesteps. Default 0. */
  eta?: number;
  /** Clip the predicted x_0 to [-1, 1] (the noise is then re-derived from the clipped x_0). Default false. */
  clipDenoised?: boolean;
}

/**
 * DDIM sampling (Song et al. 2021, eq. 12) over a subsequence tau of the timesteps:
 *   x_{prev} = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z,
 *   sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev),
 * with abar_prev = 1 after the first timestep, which makes the last step return x0_hat without noise.
 */
export class DdimSampler implements Sampler {
  readonly eta: number;
  readonly clipDenoised: boolean;
  readonly numSteps: number;
  /** The visited timesteps tau_0 < ... < tau_{S-1} (0-based). */
  readonly timesteps: Int32Array;

  constructor(
    readonly schedule: NoiseSchedule,
    options: DdimSamplerOptions,
  ) {
    this.eta = options.eta ?? 0;
    if (!(this.eta >= 0)) throw new RangeError(`eta must be >= 0, got ${this.eta}`);
    this.clipDenoised = options.clipDenoised ?? false;
    this.timesteps = uniformDdimTimesteps(schedule.numTimesteps, options.steps);
    this.numSteps = this.timesteps.length;
    for (let i = 0; i < this.numSteps; i++) {
      const sigma = this.noiseStdAt(i);
      // eta > 1 can ask for more noise than the step has variance to give.
      if (1 - this.previousAlphaCumprod(i) - sigma * sigma < -1e-12) {
        throw new RangeError(`eta = ${this.eta} gives sigma^2 > 1 - abar_prev at DDIM step ${i}`);
      }
    }
  }

  /** abar at the timestep visited after position i of `timesteps` (1 before the first, i.e. x_0). */
  private previousAlphaCumprod(i: number): number {
    return i === 0 ? 1 : this.schedule.alphasCumprod[this.timesteps[i - 1]];
  }

  /** Standard deviation of the noise added when leaving position i of `timesteps`. */
  noiseStdAt(i: number): number {
    const abarT = this.schedule.alphasCumprod[this.timesteps[i]];
    const abarPrev = this.previousAlphaCumprod(i);
    return this.eta * Math.sqrt(((1 - abarPrev) / (1 - abarT)) * (1 - abarT / abarPrev));
  }

  /** One DDIM update from position i of `timesteps`; `noise` may be null when the noise std there is 0. */
  step(xt: tf.Tensor4D, eps: tf.Tensor4D, i: number, noise: tf.Tensor4D | null): tf.Tensor4D {
    const ts = uniformTimesteps(this.timesteps[i], xt.shape[0]);
    const abarPrev = this.previousAlphaCumprod(i);
    const sigma = this.noiseStdAt(i);
    // Guards a tiny negative from rounding when eta = 1 and 1 - abar_prev - sigma^2 is 0 in exact arithmetic.
    const directionCoef = Math.sqrt(Math.max(0, 1 - abarPrev - sigma * sigma));
    return tf.tidy(() => {
      let x0 = predictX0FromEps(this.schedule, xt, ts, eps);
      let direction = eps;
      if (this.clipDenoised) {
        x0 = clipToDataRange(x0);
        // As in guided-diffusion's ddim_sample: point back towards x_t from the x_0 actually used.
        direction = predictEpsFromX0(this.schedule, xt, ts, x0);
      }
      const mean = tf.add<tf.Tensor4D>(tf.mul(Math.sqrt(abarPrev), x0), tf.mul(directionCoef, direction));
      if (sigma === 0) return mean;
      if (noise === null) throw new Error(`DDIM step ${i} has sigma ${sigma} and needs noise`);
      return tf.add(mean, tf.mul(sigma, noise));
    });
  }

  async sample(
    model: EpsModel,
    shape: [number, number, number, number],
    opts: SampleOptions,
  ): Promise<tf.Tensor4D> {
    const S = this.timesteps.length;
    const descending = this.timesteps.slice().reverse();
    const firstSampleIndex = opts.firstSampleIndex ?? 0;
    return runReverseProcess(shape, descending, opts, (x, t, visited) => {
      const i = S - 1 - visited;
      const eps = predictEps(model, x, uniformTimesteps(t, shape[0]));
      const noise =
        this.noiseStdAt(i) === 0
          ? null
          : standardNormalBatch(shape, {
              seed: opts.seed,
              purpose: Purpose.Sampling,
              step: noiseStepKey(t),
              firstSampleIndex,
            });
      const next = this.step(x, eps, i, noise);
      if (eps !== x) eps.dispose();
      return next;
    });
  }
}

/**
 * The DDIM code's 'uniform' skip: tau_i = i * floor(T / S) for i = 0..S-1. This equals the DDIM code's
 * `range(0, T, T // S)` whenever S divides T; otherwise that range has more than S entries, and this keeps
 * exactly S (diffusers' "leading" spacing).
 */
export function uniformDdimTimesteps(T: number, steps: number): Int32Array {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new RangeError(`DDIM steps must be an integer in 1..${T}, got ${steps}`);
  }
  const skip = Math.floor(T / steps);
  return new Int32Array(steps).map((_, i) => i * skip);
}
