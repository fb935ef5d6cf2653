import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpointDir, saveCheckpointDir } from '../core/checkpoint/checkpoint';
import { ImageSource } from '../core/train/batch';
import { OptimizerPlacement, Trainer } from '../core/train/trainer';
import { microConfig } from './helpers/micro-config';
import { Purpose, Rng } from '../core/rng';

const config = microConfig({
  seed: 11,
  batchSize: 4,
  microBatchSize: 2,
  warmupSteps: 2,
  emaDecay: 0.9,
  totalSteps: 4,
});

function syntheticImages(count: number): ImageSource {
  const rng = new Rng([5, Purpose.Evaluation]);
  const pixels = Uint8Array.from({ length: count * 8 * 8 * 3 }, () => rng.int(256));
  return { count, height: 8, width: 8, channels: 3, pixels };
}

const sameBits = (a: Float32Array, b: Float32Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

let dir: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  dir = mkdtempSync(join(tmpdir(), 'ddpm-det-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('training determinism', () => {
  const data = syntheticImages(10);

  test.each<OptimizerPlacement>(['host', 'device'])(
    'optimizer on the %s: 2N steps equal N steps + checkpoint + reload into a fresh trainer + N steps, bit for bit',
    async (optimizer) => {
      const straight = new Trainer({ config, data, optimizer });
      for (let i = 0; i < 4; i++) await straight.step();
      const straightState = await straight.hostState();
      straight.dispose();

      const first = new Trainer({ config, data, optimizer });
      for (let i = 0; i < 2; i++) await first.step();
      await saveCheckpointDir(join(dir, `ckpt-${optimizer}`), await first.hostState(), config);
      first.dispose();

      const loaded = await loadCheckpointDir(join(dir, `ckpt-${optimizer}`), config);
      expect(loaded.state.step).toBe(2);
      const resumed = new Trainer({ config: loaded.config, data, state: loaded.state, optimizer });
      for (let i = 0; i < 2; i++) await resumed.step();
      const resumedState = await resumed.hostState();
      resumed.dispose();

      expect(resumedState.step).toBe(4);
      for (const key of ['params', 'ema', 'adamM', 'adamV'] as const) {
        expect(sameBits(resumedState[key], straightState[key])).toBe(true);
      }
      // And training actually moved the weights.
      const initial = await new Trainer({ config, data }).hostState();
      expect(sameBits(straightState.params, initial.params)).toBe(false);
    },
  );

  test('a different seed gives a different run', async () => {
    const a = new Trainer({ config, data });
    const b = new Trainer({ config: { ...config, train: { ...config.train, seed: 12 } }, data });
    const ra = await a.step();
    const rb = await b.step();
    expect(ra.loss).not.toBe(rb.loss);
  });

  test('gradients do not depend on the micro-batch split or the worker split', async () => {
    const whole = await new Trainer({ config, data, microBatchSize: 4 }).localGradients();
    const micro = await new Trainer({ config, data, microBatchSize: 1 }).localGradients();
    const rank0 = await new Trainer({ config, data, rank: 0, worldSize: 2 }).localGradients();
    const rank1 = await new Trainer({ config, data, rank: 1, worldSize: 2 }).localGradients();
    let maxAbs = 0;
    let maxDiffMicro = 0;
    let maxDiffRanks = 0;
    for (let i = 0; i < whole.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(whole[i]));
      maxDiffMicro = Math.max(maxDiffMicro, Math.abs(whole[i] - micro[i]));
      maxDiffRanks = Math.max(maxDiffRanks, Math.abs(whole[i] - (rank0[i] + rank1[i])));
    }
    expect(maxAbs).toBeGreaterThan(1e-3);
    expect(maxDiffMicro).toBeLessThan(1e-5 * Math.max(1, maxAbs));
    expect(maxDiffRanks).toBeLessThan(1e-5 * Math.max(1, maxAbs));
  });

  test.each<OptimizerPlacement>(['host', 'device'])(
    'optimizer on the %s: a training step leaks no tensors, and dispose frees them all',
    async (optimizer) => {
      const start = tf.memory().numTensors;
      const trainer = new Trainer({ config, data, optimizer });
      await trainer.step();
      const before = tf.memory().numTensors;
      await trainer.step();
      expect(tf.memory().numTensors).toBe(before);
      await trainer.hostState();
      trainer.dispose();
      expect(tf.memory().numTensors).toBe(start);
    },
  );
});
