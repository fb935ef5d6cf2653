import * as tf from '@tensorflow/tfjs-core';

import { Purpose } from '../rng';
import { uniformTimesteps } from './coefficients';
import { DdimSampler } from './ddim';
import { INITIAL_NOISE_STEP, standardNormalBatch } from './noise';
import { predictEps } from './reverse-loop';
import type { EpsModel } from './sampler';
import type { NoiseSchedule } from './schedule';

/** RePaint's published setting: 250 respaced steps of T = 1000, jumps of 10 steps, each region done 10 times. */
const REPAINT_STEPS_PER_1000 = 250;
const REPAINT_JUMP_PER_250 = 10;
export const REPAINT_RESAMPLINGS = 10;

export interface RePaintOptions {
  /** Respaced reverse steps S (1..T). Default T / 4 (RePaint: 250 of 1000). */
  steps?: number;
  /** Steps jumped back at each resampling point. Default S / 25, at least 1 (RePaint: 10 at S = 250). */
  jumpLength?: number;
  /** Times each jump region is traversed, r >= 1 (1 = no resampling). Default 10 (RePaint's). */
  resamplings?: number;
  /**
   * Noise of the reverse step over the respaced chain, as DDIM's eta: 1 (default) is the DDPM posterior
   * q(x_{t-1} | x_t, x0_hat), RePaint's Algorithm 1; 0 is deterministic DDIM.
   */
  eta?: number;
  /** Clip each predicted x_0 to [-1, 1]. Default true. */
  clipDenoised?: boolean;
}

export interface InpaintRunOptions {
  seed: number;
  /** Global index of the batch's first image, so batches draw disjoint noise. Default 0. */
  firstSampleIndex?: number;
  /** Called after every model evaluation or jump, with the schedule positions done and their total. */
  onStep?: (done: number, total: number) => void | Promise<void>;
}

/**
 * RePaint's time schedule (Lugmayr et al. 2022, `get_schedule_jump` of the authors' code) over respaced
 * positions S-1..0, ending with -1 (the data): going down by one is a reverse step, going up by one is a
 * forward re-noising. At positions 0, j, 2j, ... below S - j the walk jumps back up j positions, r - 1
 * times, so each region is denoised r times and its known and generated parts harmonise.
 */
export function repaintSchedule(steps: number, jumpLength: number, resamplings: number): Int32Array {
  for (const [name, v] of [
    ['steps', steps],
    ['jump length', jumpLength],
    ['resamplings', resamplings],
  ] as const) {
    if (!Number.isInteger(v) || v < 1)
      throw new RangeError(`RePaint ${name} must be a whole number >= 1, got ${v}`);
  }
  const jumps = new Map<number, number>();
  for (let j = 0; j < steps - jumpLength; j += jumpLength) jumps.set(j, resamplings - 1);
  const out: number[] = [];
  let t = steps;
  while (t >= 1) {
    t -= 1;
    out.push(t);
    const left = jumps.get(t) ?? 0;
    if (left > 0) {
      jumps.set(t, left - 1);
      for (let k = 0; k < jumpLength; k++) out.push(++t);
    }
  }
  out.push(-1);
  return Int32Array.from(out);
}

/**
 * Inpainting with an unconditional model (RePaint, Algorithm 1): each reverse step computes the unknown
 * region from the model and replaces the known region by the data noised to the same level,
 *   x_{t-1} = m * (sqrt(abar_{t-1}) x_0 + sqrt(1 - abar_{t-1}) eps) + (1 - m) * x_{t-1}^unknown,
 * and the resampling jumps re-noise x_{t-1} to x_t with q(x_t | x_{t-1}) before denoising it again.
 * At the last step the known region is x_0 itself. Runs over S respaced timesteps (as DDIM does).
 */
export class RePaintSampler {
  readonly steps: number;
  readonly jumpLength: number;
  readonly resamplings: number;
  /** The schedule of positions (see repaintSchedule). */
  readonly positions: Int32Array;
  /** Model evaluations per image: the schedule's downward moves. */
  readonly numModelEvaluations: number;
  private readonly reverse: DdimSampler;

  constructor(
    readonly schedule: NoiseSchedule,
    options: RePaintOptions = {},
  ) {
    const T = schedule.numTimesteps;
    this.steps = options.steps ?? Math.max(1, Math.round((T * REPAINT_STEPS_PER_1000) / 1000));
    this.jumpLength =
      options.jumpLength ?? Math.max(1, Math.round((this.steps * REPAINT_JUMP_PER_250) / 250));
    this.resamplings = options.resamplings ?? REPAINT_RESAMPLINGS;
    this.reverse = new DdimSampler(schedule, {
      steps: this.steps,
      eta: options.eta ?? 1,
      clipDenoised: options.clipDenoised ?? true,
    });
    this.positions = repaintSchedule(this.steps, this.jumpLength, this.resamplings);
    let down = 0;
    for (let k = 1; k < this.positions.length; k++) if (this.positions[k] < this.positions[k - 1]) down++;
    this.numModelEvaluations = down;
  }

  /** The timestep (0-based, of the full schedule) at respaced position i. */
  timestepAt(i: number): number {
    return this.reverse.timesteps[i];
  }

  /** abar at position i; 1 at position -1 (the data). */
  private alphaCumprodAt(i: number): number {
    return i < 0 ? 1 : this.schedule.alphasCumprod[this.timestepAt(i)];
  }

  /**
   * One reverse step from position i to i - 1 (Algorithm 1, lines 4-8). `x0` and `mask` (1 = known,
   * broadcast over channels) give the known region; `knownNoise` is ignored at i = 0, where the known
   * region is x0 itself; `stepNoise` is needed where the reverse step has noise (eta > 0, i > 0).
   */
  step(
    xt: tf.Tensor4D,
    eps: tf.Tensor4D,
    i: number,
    x0: tf.Tensor4D,
    mask: tf.Tensor4D,
    knownNoise: tf.Tensor4D | null,
    stepNoise: tf.Tensor4D | null,
  ): tf.Tensor4D {
    return tf.tidy(() => {
      const unknown = this.reverse.step(xt, eps, i, stepNoise);
      const abarPrev = this.alphaCumprodAt(i - 1);
      let known: tf.Tensor4D = x0;
      if (i > 0) {
        if (knownNoise === null)
          throw new Error(`RePaint step at position ${i} needs noise for the known region`);
        known = tf.add(tf.mul(Math.sqrt(abarPrev), x0), tf.mul(Math.sqrt(1 - abarPrev), knownNoise));
      }
      return tf.add(tf.mul(mask, known), tf.mul(tf.sub(1, mask), unknown));
    });
  }

  /** Re-noises from position i to i + 1 with q(x_{tau_{i+1}} | x_{tau_i}) (Algorithm 1, line 10). */
  undo(x: tf.Tensor4D, i: number, noise: tf.Tensor4D): tf.Tensor4D {
    const ratio = this.alphaCumprodAt(i + 1) / this.alphaCumprodAt(i);
    return tf.tidy(() => tf.add(tf.mul(Math.sqrt(ratio), x), tf.mul(Math.sqrt(1 - ratio), noise)));
  }

  /** Whether the reverse step from position i adds noise. */
  private stepIsNoisy(i: number): boolean {
    return this.reverse.noiseStdAt(i) > 0;
  }

  /**
   * Fills the region where `mask` is 0. x0: [B, H, W, C] in [-1, 1] (its masked-out values are ignored);
   * mask: [B, H, W, 1] or [B, H, W, C] of 0/1. The caller keeps ownership of both.
   */
  async inpaint(
    model: EpsModel,
    x0: tf.Tensor4D,
    mask: tf.Tensor4D,
    opts: InpaintRunOptions,
  ): Promise<tf.Tensor4D> {
    const shape = x0.shape;
    const firstSampleIndex = opts.firstSampleIndex ?? 0;
    // Keys: the initial noise, then three streams per schedule move k (known part, step, jump).
    const noise = (key: number) =>
      standardNormalBatch(shape, {
        seed: opts.seed,
        purpose: Purpose.Inpainting,
        step: key,
        firstSampleIndex,
      });
    const total = this.positions.length - 1;
    let x = noise(INITIAL_NOISE_STEP);
    try {
      for (let k = 1; k <= total; k++) {
        const from = this.positions[k - 1];
        const to = this.positions[k];
        const current = x;
        x = tf.tidy(() => {
          const key = 1 + 3 * (k - 1);
          if (to > from) return this.undo(current, from, noise(key + 2));
          const eps = predictEps(model, current, uniformTimesteps(this.timestepAt(from), shape[0]));
          return this.step(
            current,
            eps,
            from,
            x0,
            mask,
            from > 0 ? noise(key) : null,
            this.stepIsNoisy(from) ? noise(key + 1) : null,
          );
        });
        current.dispose();
        await opts.onStep?.(k, total);
      }
    } catch (err) {
      x.dispose();
      throw err;
    }
    return x;
  }
}
