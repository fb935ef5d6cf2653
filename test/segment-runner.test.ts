/**
 * The one training loop that `npm run train` and the Temporal activity share (core/train/segment-runner):
 * what it saves, when, in which order, and what it does when interrupted. A real Trainer on the micro
 * U-Net and the native backend; the writer records calls in memory (the store is not under test here).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../core/backend';
import { loadImageDataset, type ImageDataset } from '../core/data';
import type { RunConfig } from '../core/presets';
import { runSegment, type SegmentWriter } from '../core/train/segment-runner';
import { Trainer } from '../core/train/trainer';
import { microConfig, sameBits, uninterruptedParams, writeMicroDataset } from './helpers/pipeline';

jest.setTimeout(180_000);

let dir: string;
let data: ImageDataset;
let config: RunConfig;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ddpm-runner-'));
  const dataset = await writeMicroDataset(join(dir, 'data'));
  config = microConfig(5);
  await initBackend('tensorflow');
  data = await loadImageDataset(dataset);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A writer that records what it was asked to store, in order. */
function recorder() {
  const calls: string[] = [];
  const metrics = new Map<number, number[]>();
  const params = new Map<number, Float32Array>();
  const writer: SegmentWriter = {
    putMetrics: async (step, jsonl) => {
      calls.push(`metrics ${step}`);
      const lines = jsonl.trimEnd().split('\n');
      metrics.set(
        step,
        lines.map((l) => (JSON.parse(l) as { step: number }).step),
      );
    },
    saveCheckpoint: async (state) => {
      calls.push(`checkpoint ${state.step}`);
      params.set(state.step, state.params.slice());
      return `ckpt-${state.step}`;
    },
  };
  return { calls, metrics, params, writer };
}

test('saves on every boundary and at the target, metrics first, each step in exactly one metrics object', async () => {
  const trainer = new Trainer({ config, data });
  const rec = recorder();
  const seen: number[] = [];
  try {
    const outcome = await runSegment({
      trainer,
      targetStep: 5,
      checkpointEvery: 2,
      writer: rec.writer,
      onStep: (r) => seen.push(r.step),
    });
    expect(outcome.step).toBe(5);
    expect(outcome.checkpointKey).toBe('ckpt-5');
    expect(Number.isFinite(outcome.loss)).toBe(true);
    expect(outcome.images).toBe(5 * config.train.batchSize);
  } finally {
    trainer.dispose();
  }
  expect(seen).toEqual([1, 2, 3, 4, 5]);
  expect(rec.calls).toEqual([
    'metrics 2',
    'checkpoint 2',
    'metrics 4',
    'checkpoint 4',
    'metrics 5',
    'checkpoint 5',
  ]);
  expect([...rec.metrics]).toEqual([
    [2, [1, 2]],
    [4, [3, 4]],
    [5, [5]],
  ]);
  // The loop changes nothing in the arithmetic: the same bits as stepping the trainer by hand.
  expect(sameBits(rec.params.get(5)!, await uninterruptedParams(config, join(dir, 'data')))).toBe(true);
});

test('an interruption checkpoints the step reached, then the error goes on; other errors save nothing', async () => {
  class Interrupted extends Error {}
  const interruptAt = (step: number, error: Error) => async (r: { step: number }) => {
    if (r.step === step) throw error;
  };

  const trainer = new Trainer({ config, data });
  const rec = recorder();
  const told: number[] = [];
  try {
    await expect(
      runSegment({
        trainer,
        targetStep: 5,
        checkpointEvery: 2,
        writer: rec.writer,
        startKey: 'ckpt-0',
        afterStep: interruptAt(3, new Interrupted('paused')),
        isInterruption: (err) => err instanceof Interrupted,
        onInterrupted: (step) => told.push(step),
      }),
    ).rejects.toThrow('paused');
  } finally {
    trainer.dispose();
  }
  expect(told).toEqual([3]);
  expect(rec.calls).toEqual(['metrics 2', 'checkpoint 2', 'metrics 3', 'checkpoint 3']);

  const other = new Trainer({ config, data });
  const rec2 = recorder();
  try {
    await expect(
      runSegment({
        trainer: other,
        targetStep: 5,
        checkpointEvery: 2,
        writer: rec2.writer,
        afterStep: interruptAt(3, new Error('disk on fire')),
        isInterruption: (err) => err instanceof Interrupted,
      }),
    ).rejects.toThrow('disk on fire');
  } finally {
    other.dispose();
  }
  expect(rec2.calls).toEqual(['metrics 2', 'checkpoint 2']);
});
