/**
 * Adam with linear warmup, global-norm gradient clipping and an EMA of the weights, on flat fp32 buffers
 * in JS: the reference for the device-resident update (device-state.ts), which does the same arithmetic
 * as tensor ops where the state lives on the backend. The state is one buffer per quantity, the
 * checkpoint format.
 */
export interface OptimizerHyperparams {
  learningRate: number;
  warmupSteps: number;
  gradClipNorm: number;
  adamBeta1: number;
  adamBeta2: number;
  adamEpsilon: number;
  emaDecay: number;
  /** Ramp the EMA decay up from 0.1 as (1 + step) / (10 + step) until it reaches emaDecay. */
  emaWarmup?: boolean;
}

export interface TrainState {
  /** Optimizer steps already applied. */
  step: number;
  params: Float32Array;
  adamM: Float32Array;
  adamV: Float32Array;
  ema: Float32Array;
}

export function initialTrainState(params: Float32Array): TrainState {
  return {
    step: 0,
    params,
    adamM: new Float32Array(params.length),
    adamV: new Float32Array(params.length),
    ema: params.slice(),
  };
}

export function learningRateAt(
  step: number,
  h: Pick<OptimizerHyperparams, 'learningRate' | 'warmupSteps'>,
): number {
  // The reference warms up as lr * min(step / warmup, 1) with step counted from 1 for the first update.
  return h.warmupSteps > 0 ? h.learningRate * Math.min((step + 1) / h.warmupSteps, 1) : h.learningRate;
}

/**
 * The EMA decay at a step. With warmup it follows TensorFlow's ExponentialMovingAverage with
 * num_updates (also diffusers' EMAModel): min(decay, (1 + step) / (10 + step)), so a short run's EMA
 * is not dominated by the initial weights (at a fixed 0.995 a quarter of them remain after 250 steps,
 * and the zero-initialised output layer shrinks every prediction).
 */
export function emaDecayAt(step: number, h: Pick<OptimizerHyperparams, 'emaDecay' | 'emaWarmup'>): number {
  return h.emaWarmup ? Math.min(h.emaDecay, (1 + step) / (10 + step)) : h.emaDecay;
}

export function globalNorm(values: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * values[i];
  return Math.sqrt(sum);
}

export interface UpdateStats {
  learningRate: number;
  gradNorm: number;
  clipped: boolean;
}

/** The scalars of the update that takes `step` completed steps to step + 1. */
export interface AdamStepConstants {
  learningRate: number;
  beta1: number;
  beta2: number;
  /** lr / (1 - beta1^t) */
  stepSize: number;
  /** sqrt(1 - beta2^t) */
  sqrtBiasCorrection2: number;
  epsilon: number;
  emaDecay: number;
}

export function adamStepConstants(step: number, h: OptimizerHyperparams): AdamStepConstants {
  const learningRate = learningRateAt(step, h);
  const t = step + 1;
  return {
    learningRate,
    beta1: h.adamBeta1,
    beta2: h.adamBeta2,
    stepSize: learningRate / (1 - h.adamBeta1 ** t),
    sqrtBiasCorrection2: Math.sqrt(1 - h.adamBeta2 ** t),
    epsilon: h.adamEpsilon,
    emaDecay: emaDecayAt(step, h),
  };
}

/** Applies one optimizer step in place (grads is read, not changed) and advances state.step. */
export function applyUpdate(state: TrainState, grads: Float32Array, h: OptimizerHyperparams): UpdateStats {
  if (grads.length !== state.params.length) {
    throw new Error(`gradient buffer has ${grads.length} values, parameters have ${state.params.length}`);
  }
  const c = adamStepConstants(state.step, h);
  const gradNorm = globalNorm(grads);
  // tf.clip_by_global_norm: scale by clip / max(norm, clip).
  const scale = h.gradClipNorm / Math.max(gradNorm, h.gradClipNorm);
  const { beta1: b1, beta2: b2, stepSize, sqrtBiasCorrection2: sqrtBc2, epsilon, emaDecay: decay } = c;
  const { params, adamM: m, adamV: v, ema } = state;
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * scale;
    const mi = b1 * m[i] + (1 - b1) * g;
    const vi = b2 * v[i] + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const p = params[i] - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + epsilon);
    params[i] = p;
    ema[i] = decay * ema[i] + (1 - decay) * params[i];
  }
  state.step += 1;
  return { learningRate: c.learningRate, gradNorm, clipped: scale < 1 };
}
