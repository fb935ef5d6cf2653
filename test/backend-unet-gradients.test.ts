/**
 * For every backend that can run on this machine, the U-Net's training loss and its gradient with
 * respect to every parameter match the reference `cpu` backend on a small input (dropout included).
 */
import * as tf from '@tensorflow/tfjs-core';
import { PREFERENCE_ORDER, initBackend } from '../core/backend';
import type { BackendName } from '../core/backend';
import { ParamLayout } from '../core/model/params';
import { unetParamSpecs } from '../core/model/unet';
import { Purpose, Rng } from '../core/rng';
import { initialTrainState } from '../core/train/optimizer';
import { Trainer } from '../core/train/trainer';
import { microConfig } from './helpers/micro-config';

jest.setTimeout(240_000);

const config = microConfig({ seed: 3, batchSize: 4, microBatchSize: 2 });

const rng = new Rng([9, Purpose.Evaluation]);
const data = {
  count: 8,
  height: 8,
  width: 8,
  channels: 3,
  pixels: Uint8Array.from({ length: 8 * 8 * 8 * 3 }, () => rng.int(256)),
};

/** The seed's initial weights, perturbed so the zero-initialised output layers get non-trivial gradients. */
function perturbedParams(): Float32Array {
  const params = new ParamLayout(unetParamSpecs(config.model)).initialize(config.train.seed);
  const init = new Rng([4, Purpose.Init]);
  for (let i = 0; i < params.length; i++) params[i] += 0.05 * init.normal();
  return params;
}

async function gradientsOn(backend: BackendName): Promise<Float32Array> {
  await initBackend(backend);
  const trainer = new Trainer({ config, data, state: initialTrainState(perturbedParams()) });
  const before = tf.memory().numTensors;
  const grads = await trainer.localGradients();
  trainer.dispose();
  expect(tf.memory().numTensors).toBe(before);
  return grads;
}

let reference: Float32Array;
beforeAll(async () => {
  reference = await gradientsOn('cpu');
});

/** Backends other than cpu that start here; each must be checked (a failing start is not hidden). */
const candidates = PREFERENCE_ORDER.filter((b) => b !== 'cpu');

test.each(candidates)(
  '%s: loss and all parameter gradients match the cpu backend (or it cannot start here)',
  async (name) => {
    let grads: Float32Array;
    try {
      grads = await gradientsOn(name);
    } catch (e) {
      // Only "cannot start" is acceptable, and only for backends that need hardware or a build this machine lacks.
      expect((e as Error).message).toMatch(new RegExp(`^backend '${name}' cannot start: `));
      expect(['webgpu', 'tensorflow']).toContain(name);
      return;
    }
    const lossIndex = reference.length - 1;
    expect(Math.abs(grads[lossIndex] - reference[lossIndex])).toBeLessThan(
      1e-5 * Math.abs(reference[lossIndex]) + 1e-7,
    );
    let maxRef = 0;
    let maxDiff = 0;
    for (let i = 0; i < lossIndex; i++) {
      maxRef = Math.max(maxRef, Math.abs(reference[i]));
      maxDiff = Math.max(maxDiff, Math.abs(grads[i] - reference[i]));
    }
    expect(maxRef).toBeGreaterThan(1e-3);
    expect(maxDiff / maxRef).toBeLessThan(1e-4);
  },
);

test('the native backend is among those checked when it is installed (npm test installs it)', async () => {
  if (process.env.DDPM_NO_NATIVE === '1') return;
  const info = await initBackend('tensorflow');
  expect(info.name).toBe('tensorflow');
});
