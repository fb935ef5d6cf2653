import * as tf from '@tensorflow/tfjs-core';

import { Purpose } from '../rng';
import { perSampleCoefficient, uniformTimesteps } from './coefficients';
import { noiseStepKey, standardNormalBatch } from './noise';
import { clipToDataRange, predictX0FromEps, qPosteriorMean } from './posterior';
import { predictEps, runReverseProcess } from './reverse-loop';
import type { EpsModel, SampleOptions, Sampler } from './sampler';
import type { NoiseSchedule } from './schedule';
import { modelLogVariance, type VarianceType } from './variance';

export interface AncestralSamplerOptions {
  /** sigma_t^2 = beta_t ('fixedlarge', default, the paper's CIFAR-10 choice) or beta_tilde_t ('fixedsmall'). */
  variance?: VarianceType;
  /**
   * Clip the predicted x_0 to [-1, 1] before forming the mean. Default false: Algorithm 2 as written. The
   * reference code's p_sample clips by default (clip_denoised=True); set true to sample as it does.
   */
  clipDenoised?: boolean;
}

/**
 * DDPM ancestral sampling, the paper's Algorithm 2: for t = T..1,
 *   x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - abar_t) eps_theta(x_t, t)) + sigma_t z,
 * with z ~ N(0, I) except at the last step, where z = 0. One model evaluation per timestep.
 */
export class AncestralSampler implements Sampler {
  readonly variance: VarianceType;
  readonly clipDenoised: boolean;
  readonly numSteps: number;
  /** sigma_t; zero at t = 0 because Algorithm 2 returns the mean at the last step. */
  readonly noiseStd: Float64Array;
  /** 1 / sqrt(alpha_t) and beta_t / sqrt(1 - abar_t): Algorithm 2's coefficients, float64. */
  private readonly recipSqrtAlphas: Float64Array;
  private readonly epsCoefs: Float64Array;

  constructor(
    readonly schedule: NoiseSchedule,
    options: AncestralSamplerOptions = {},
  ) {
    this.variance = options.variance ?? 'fixedlarge';
    this.clipDenoised = options.clipDenoised ?? false;
    const T = schedule.numTimesteps;
    this.numSteps = T;
    const logVariance = modelLogVariance(schedule, this.variance);
    this.noiseStd = new Float64Array(T);
    this.recipSqrtAlphas = new Float64Array(T);
    this.epsCoefs = new Float64Array(T);
    for (let t = 0; t < T; t++) {
      this.noiseStd[t] = t === 0 ? 0 : Math.exp(0.5 * logVariance[t]);
      this.recipSqrtAlphas[t] = 1 / Math.sqrt(schedule.alphas[t]);
      this.epsCoefs[t] = schedule.betas[t] / schedule.sqrtOneMinusAlphasCumprod[t];
    }
  }

  /** Algorithm 2's mean of p(x_{t-1} | x_t), straight from the noise prediction. */
  meanFromEps(xt: tf.Tensor4D, eps: tf.Tensor4D, t: number): tf.Tensor4D {
    const ts = uniformTimesteps(t, xt.shape[0]);
    return tf.tidy(() =>
      tf.mul(
        perSampleCoefficient(this.recipSqrtAlphas, ts),
        tf.sub(xt, tf.mul(perSampleCoefficient(this.epsCoefs, ts), eps)),
      ),
    );
  }

  /**
   * The same mean written through the predicted x_0 (the reference code's route): the posterior mean of
   * q(x_{t-1} | x_t, x_0 = x0_hat). Identical to `meanFromEps` without clipping; clipping x0_hat to the data
   * range is only possible in this form.
   */
  meanFromPredictedX0(xt: tf.Tensor4D, eps: tf.Tensor4D, t: number, clip: boolean): tf.Tensor4D {
    const ts = uniformTimesteps(t, xt.shape[0]);
    return tf.tidy(() => {
      const x0 = predictX0FromEps(this.schedule, xt, ts, eps);
      return qPosteriorMean(this.schedule, clip ? clipToDataRange(x0) : x0, xt, ts);
    });
  }

  /** One reverse step x_t -> x_{t-1}; `noise` is ignored at t = 0 and may be null there. */
  step(xt: tf.Tensor4D, eps: tf.Tensor4D, t: number, noise: tf.Tensor4D | null): tf.Tensor4D {
    return tf.tidy(() => {
      const mean = this.clipDenoised
        ? this.meanFromPredictedX0(xt, eps, t, true)
        : this.meanFromEps(xt, eps, t);
      if (t === 0) return mean;
      if (noise === null) throw new Error(`step at t = ${t} needs noise`);
      return tf.add(mean, tf.mul(this.noiseStd[t], noise));
    });
  }

  async sample(
    model: EpsModel,
    shape: [number, number, number, number],
    opts: SampleOptions,
  ): Promise<tf.Tensor4D> {
    const T = this.schedule.numTimesteps;
    const descending = new Int32Array(T).map((_, i) => T - 1 - i);
    const firstSampleIndex = opts.firstSampleIndex ?? 0;
    return runReverseProcess(shape, descending, opts, (x, t) => {
      const eps = predictEps(model, x, uniformTimesteps(t, shape[0]));
      const noise =
        t === 0
          ? null
          : standardNormalBatch(shape, {
              seed: opts.seed,
              purpose: Purpose.Sampling,
              step: noiseStepKey(t),
              firstSampleIndex,
            });
      const next = this.step(x, eps, t, noise);
      if (eps !== x) eps.dispose();
      return next;
    });
  }
}
