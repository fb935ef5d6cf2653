/**
 * A micro-batch the backend cannot allocate is a typed failure that names the --micro-batch to try, and
 * the process can go on training, on the backends where it can be produced for real here: the wasm heap
 * (32-bit, so a tensor beyond 4 GiB cannot exist) and native TensorFlow (an allocation far beyond any
 * machine's memory, refused by its allocator at once). The model is one whose full-resolution attention
 * at 512x512 needs a 275 GB score matrix per image: nothing is allocated before the refusal.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../core/backend';
import { asOutOfMemory } from '../core/backend/out-of-memory';
import { BackendOutOfMemoryError, MicroBatchOutOfMemoryError } from '../core/errors';
import type { RunConfig } from '../core/presets';
import { Trainer } from '../core/train/trainer';
import { microConfig } from './helpers/micro-config';

jest.setTimeout(300_000);

function attentionAt512(batchSize: number): RunConfig {
  const base = microConfig({ batchSize, microBatchSize: batchSize, seed: 1 });
  return {
    ...base,
    model: {
      ...base.model,
      imageSize: 512,
      ch: 8,
      chMult: [1],
      attnResolutions: [512],
      dropout: 0,
      groups: 4,
    },
  };
}

const images512 = (count: number) => ({
  count,
  height: 512,
  width: 512,
  channels: 3,
  pixels: Uint8Array.from({ length: count * 512 * 512 * 3 }, (_, i) => (i * 37) % 256),
});

/** Steps `config` once, expecting the out-of-memory failure; then shows the backend still trains. */
async function expectMicroBatchOutOfMemory(backend: string, cause: RegExp): Promise<void> {
  const trainer = new Trainer({ config: attentionAt512(2), data: images512(2) });
  const err = await trainer.step().then(
    () => null,
    (e: unknown) => e,
  );
  trainer.dispose();
  expect(err).toBeInstanceOf(MicroBatchOutOfMemoryError);
  const message = (err as Error).message;
  expect(message).toMatch(
    new RegExp(`^a micro-batch of 2 images does not fit in the ${backend} backend's memory \\(`),
  );
  expect(message).toMatch(cause);
  expect(message).toMatch(/; try --micro-batch 1 \(the global batch stays the same\)$/);
  expect(trainer.currentStep).toBe(0);

  // Nothing was corrupted: this process goes on training (here the small micro U-Net).
  const small = new Trainer({
    config: microConfig({ batchSize: 2, microBatchSize: 1, seed: 1 }),
    data: { count: 2, height: 8, width: 8, channels: 3, pixels: new Uint8Array(2 * 192).fill(99) },
  });
  const r = await small.step();
  small.dispose();
  expect(r.step).toBe(1);
  expect(Number.isFinite(r.loss)).toBe(true);
}

describe('wasm', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  test('a tensor beyond the heap is a BackendOutOfMemoryError, and the backend still computes afterwards', async () => {
    const block = tf.ones([1024, 1024]);
    // 1200 x 4 MiB: more than the 32-bit wasm heap can ever hold. Unguarded, TF.js wrote through a
    // wrapped-around pointer ("memory access out of bounds") and every later operation failed too.
    expect(() => tf.tile(block, [1200, 1])).toThrow(BackendOutOfMemoryError);
    block.dispose();
    const after = tf.mul(tf.ones([4, 4]), 3);
    expect(Array.from(await after.data())).toEqual(new Array(16).fill(3));
    after.dispose();
  });

  test('a micro-batch that does not fit names the --micro-batch to try; the process trains on', async () => {
    await expectMicroBatchOutOfMemory(
      'wasm',
      /\(wasm: a 274877906944-byte tensor exceeds the \d+-byte wasm heap\)/,
    );
  });
});

describe('tensorflow', () => {
  beforeAll(async () => {
    await initBackend('tensorflow');
  });

  test('a micro-batch that does not fit names the --micro-batch to try; the process trains on', async () => {
    await expectMicroBatchOutOfMemory('tensorflow', /\(tensorflow: OOM when allocating tensor with shape\[/);
  });

  test('errors that are not about memory are not taken for it', () => {
    expect(asOutOfMemory(new Error('Invalid TF_Status: 3\nMessage: Incompatible shapes'))).toBeNull();
    expect(asOutOfMemory(new RangeError('Maximum call stack size exceeded'))).toBeNull();
    expect(asOutOfMemory('OOM when allocating')).toBeNull();
  });
});
