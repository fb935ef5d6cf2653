import {
  applyUpdate,
  emaDecayAt,
  initialTrainState,
  learningRateAt,
  OptimizerHyperparams,
} from '../core/train/optimizer';

const hyper: OptimizerHyperparams = {
  learningRate: 1e-2,
  warmupSteps: 0,
  gradClipNorm: 1,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEpsilon: 1e-8,
  emaDecay: 0.995,
  totalSteps: 1000,
};

describe('learning rate', () => {
  const h = { ...hyper, learningRate: 1e-3, warmupSteps: 100, totalSteps: 1100 };

  it('warms up linearly, then stays constant without a decay', () => {
    expect(learningRateAt(0, h)).toBeCloseTo(1e-5, 15);
    expect(learningRateAt(49, h)).toBeCloseTo(5e-4, 15);
    expect([99, 100, 1099, 5000].map((s) => learningRateAt(s, h))).toEqual([1e-3, 1e-3, 1e-3, 1e-3]);
  });

  it('with a cosine decay: the same warmup, then a half cosine that reaches 0 just past the last step', () => {
    const c = { ...h, lrDecay: 'cosine' as const };
    expect(learningRateAt(49, c)).toBe(learningRateAt(49, h));
    expect(learningRateAt(99, c)).toBe(1e-3);
    // Half-way through the 1000 steps after warmup (span 1001 counting the step past the end).
    expect(learningRateAt(99 + 500, c)).toBeCloseTo(1e-3 * 0.5 * (1 + Math.cos((Math.PI * 500) / 1001)), 15);
    const last = learningRateAt(1099, c);
    expect(last).toBeGreaterThan(0);
    expect(last).toBeLessThan(1e-8);
    expect(learningRateAt(5000, c)).toBe(0);
    const rates = Array.from({ length: 1000 }, (_, i) => learningRateAt(100 + i, c));
    expect(rates.every((r, i) => i === 0 || r < rates[i - 1])).toBe(true);
  });
});

describe('EMA decay', () => {
  it('is the configured constant without warmup', () => {
    expect([0, 10, 1e6].map((s) => emaDecayAt(s, hyper))).toEqual([0.995, 0.995, 0.995]);
  });

  it("with warmup follows TensorFlow's num_updates ramp (1 + step) / (10 + step), capped at the decay", () => {
    const warm = { ...hyper, emaWarmup: true };
    expect(emaDecayAt(0, warm)).toBeCloseTo(0.1, 15);
    expect(emaDecayAt(90, warm)).toBeCloseTo(91 / 100, 15);
    // (1 + s) / (10 + s) reaches 0.995 at s = 1790.
    expect(emaDecayAt(1789, warm)).toBeLessThan(0.995);
    expect(emaDecayAt(1790, warm)).toBe(0.995);
    expect(emaDecayAt(5000, warm)).toBe(0.995);
  });

  it('with warmup, the EMA of a short run follows the trained weights instead of the initial ones', () => {
    const run = (h: OptimizerHyperparams) => {
      const state = initialTrainState(new Float32Array([0, 0]));
      for (let i = 0; i < 200; i++) applyUpdate(state, new Float32Array([-1, 1]), h);
      return state;
    };
    const plain = run(hyper);
    const warm = run({ ...hyper, emaWarmup: true });
    // Same optimizer path: only the EMA differs.
    expect(Array.from(warm.params)).toEqual(Array.from(plain.params));
    const lag = (s: typeof plain) => Math.abs(s.params[0] - s.ema[0]) / Math.abs(s.params[0]);
    expect(lag(plain)).toBeGreaterThan(0.35);
    expect(lag(warm)).toBeLessThan(0.11);
  });
});
