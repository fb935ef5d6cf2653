/**
 * Adam with linear warmup, global-norm gradient clipping and an EMA of the weights, all on flat fp32
 * buffers. The update runs in JS: it is identical on every backend, the state is one buffer per moment
 * (trivial to checkpoint and to all-reduce against), and at the step times of this project its cost is
 * small next to the forward and backward passes.
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

/** Applies one optimizer step in place (grads is read, not changed) and advances state.step. */
export function applyUpdate(state: TrainState, grads: Float32Array, h: OptimizerHyperparams): UpdateStats {
  if (grads.length !== state.params.length) {
    throw new Error(`gradient buffer has ${grads.length} values, parameters have ${state.params.length}`);
  }
  const lr = learningRateAt(state.step, h);
  const gradNorm = globalNorm(grads);
  // tf.clip_by_global_norm: scale by clip / max(norm, clip).
  const scale = h.gradClipNorm / Math.max(gradNorm, h.gradClipNorm);
  const t = state.step + 1;
  const b1 = h.adamBeta1;
  const b2 = h.adamBeta2;
  const biasCorrection1 = 1 - b1 ** t;
  const biasCorrection2 = 1 - b2 ** t;
  const stepSize = lr / biasCorrection1;
  const sqrtBc2 = Math.sqrt(biasCorrection2);
  const { params, adamM: m, adamV: v, ema } = state;
  const decay = emaDecayAt(state.step, h);
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * scale;
    const mi = b1 * m[i] + (1 - b1) * g;
    const vi = b2 * v[i] + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const p = params[i] - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + h.adamEpsilon);
    params[i] = p;
    ema[i] = decay * ema[i] + (1 - decay) * params[i];
  }
  state.step = t;
  return { learningRate: lr, gradNorm, clipped: scale < 1 };
}
