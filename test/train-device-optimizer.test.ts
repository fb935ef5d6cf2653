/**
 * The device-resident optimizer (state as tensors, one fused clip + Adam + EMA sequence per step) against
 * the JS reference optimizer, on the native TensorFlow CPU build and on wasm: the same steps give the same
 * losses, gradient norms, parameters, Adam moments and EMA within float tolerance, with either way of
 * cutting the state into tensors; the all-reduce path (gradients to the host and back) changes no bit;
 * a resume from the host copy continues bit for bit; and a non-finite loss leaves the state untouched.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../core/backend';
import type { BackendName } from '../core/backend';
import { Purpose, Rng } from '../core/rng';
import { TrainState, initialTrainState } from '../core/train/optimizer';
import { StepResult, Trainer, TrainerOptions } from '../core/train/trainer';
import { microConfig } from './helpers/micro-config';

jest.setTimeout(300_000);

const STEPS = 4;
const config = microConfig({
  seed: 21,
  batchSize: 4,
  microBatchSize: 2,
  warmupSteps: 3,
  emaDecay: 0.9,
  emaWarmup: true,
  // Low enough that the clip acts on some steps and not on others.
  gradClipNorm: 0.5,
  totalSteps: STEPS,
});
const rng = new Rng([31, Purpose.Evaluation]);
const data = {
  count: 12,
  height: 8,
  width: 8,
  channels: 3,
  pixels: Uint8Array.from({ length: 12 * 8 * 8 * 3 }, () => rng.int(256)),
};
const QUANTITIES = ['params', 'adamM', 'adamV', 'ema'] as const;

interface Run {
  results: StepResult[];
  state: TrainState;
}

async function train(opts: Partial<TrainerOptions>, steps = STEPS): Promise<Run> {
  const trainer = new Trainer({ config, data, ...opts });
  const results: StepResult[] = [];
  for (let i = 0; i < steps; i++) results.push(await trainer.step());
  const state = cloneState(await trainer.hostState());
  trainer.dispose();
  return { results, state };
}

function cloneState(s: TrainState): TrainState {
  return {
    step: s.step,
    params: s.params.slice(),
    adamM: s.adamM.slice(),
    adamV: s.adamV.slice(),
    ema: s.ema.slice(),
  };
}

const sameBits = (a: Float32Array, b: Float32Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Largest difference relative to the largest magnitude of the reference. */
function relDiff(a: Float32Array, ref: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]));
    diff = Math.max(diff, Math.abs(a[i] - ref[i]));
  }
  return diff / scale;
}

/**
 * WebGPU runs where a Vulkan driver is found (a GPU, or lavapipe in CI: README "WebGPU without a GPU");
 * elsewhere its tests pass only after checking that it cannot start, as the gradient tests do.
 */
describe.each<BackendName>(['tensorflow', 'wasm', 'webgpu'])('%s backend', (backend) => {
  let host: Run;
  let started = false;
  beforeAll(async () => {
    try {
      await initBackend(backend);
    } catch (e) {
      if (backend !== 'webgpu') throw e;
      expect((e as Error).message).toMatch(/^backend 'webgpu' cannot start: /);
      return;
    }
    started = true;
    host = await train({ optimizer: 'host' });
  });

  test.each(['flat', 'per-tensor'] as const)(
    '%s device state matches the JS reference optimizer within float tolerance',
    async (deviceLayout) => {
      if (!started) return;
      const device = await train({ optimizer: 'device', deviceLayout });
      expect(device.state.step).toBe(STEPS);
      for (let i = 0; i < STEPS; i++) {
        const [d, h] = [device.results[i], host.results[i]];
        expect(d.step).toBe(h.step);
        expect(d.learningRate).toBe(h.learningRate);
        expect(Math.abs(d.loss - h.loss)).toBeLessThan(1e-5 * h.loss);
        expect(Math.abs(d.gradNorm - h.gradNorm)).toBeLessThan(1e-5 * h.gradNorm);
        expect(d.clipped).toBe(h.clipped);
      }
      // The clip was exercised both ways.
      expect(host.results.some((r) => r.clipped)).toBe(true);
      expect(host.results.some((r) => !r.clipped)).toBe(true);
      const diffs = Object.fromEntries(QUANTITIES.map((q) => [q, relDiff(device.state[q], host.state[q])]));
      console.log(`${backend} ${deviceLayout}: max rel. difference after ${STEPS} steps`, diffs);
      for (const q of QUANTITIES) {
        expect(diffs[q]).toBeLessThan(1e-5);
        // Training moved every quantity away from where it started.
        expect(sameBits(device.state[q], initialState()[q])).toBe(false);
      }
    },
  );

  test('gradients through the host and back (the all-reduce path) change no bit', async () => {
    if (!started) return;
    const direct = await train({ optimizer: 'device' });
    let reductions = 0;
    const reduced = await train({
      optimizer: 'device',
      reduce: async (local) => {
        reductions++;
        return local.slice();
      },
    });
    expect(reductions).toBe(STEPS);
    for (const q of QUANTITIES) expect(sameBits(reduced.state[q], direct.state[q])).toBe(true);
    expect(reduced.results.map((r) => r.loss)).toEqual(direct.results.map((r) => r.loss));
  });

  test('a trainer resumed from the host copy continues bit for bit', async () => {
    if (!started) return;
    const straight = await train({ optimizer: 'device' });
    const half = await train({ optimizer: 'device' }, STEPS / 2);
    const resumed = await train({ optimizer: 'device', state: half.state }, STEPS / 2);
    expect(resumed.state.step).toBe(STEPS);
    for (const q of QUANTITIES) expect(sameBits(resumed.state[q], straight.state[q])).toBe(true);
  });

  test('a non-finite loss stops the step and leaves the state as it was', async () => {
    if (!started) return;
    const broken = initialState();
    broken.params[0] = NaN;
    const kept = cloneState(broken);
    const tensorsBefore = tf.memory().numTensors;
    const trainer = new Trainer({ config, data, state: broken, optimizer: 'device' });
    await expect(trainer.step()).rejects.toThrow(/^loss is NaN at step 0; stopping before the update/);
    expect(trainer.currentStep).toBe(0);
    const after = await trainer.hostState();
    for (const q of QUANTITIES) expect(sameBits(after[q], kept[q])).toBe(true);
    trainer.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});

function initialState(): TrainState {
  const trainer = new Trainer({ config, data, optimizer: 'host' });
  const params = trainer.layout.initialize(config.train.seed);
  trainer.dispose();
  return initialTrainState(params);
}
