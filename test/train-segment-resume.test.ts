/**
 * Where a training segment resumes from is decided by the store, never by what this process remembers:
 * a trainer process keeps its last segment's final state only to avoid reading back the checkpoint it
 * just wrote, and hands it to one segment at most. The activities run in this process (what is under test
 * is process memory, shared by every activity a worker process runs), in Temporal's MockActivityEnvironment
 * (the SDK's activity context, without a server), on a real local store and the native backend.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { prepareDataset, trainSegment } from '../activities';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { loadImageDataset } from '../core/data';
import type { RunConfig } from '../core/presets';
import type { TrainState } from '../core/train/optimizer';
import { Trainer } from '../core/train/trainer';
import { LocalDirStore } from '../store';
import type { TrainSegmentInput, TrainSegmentResult } from '../workflows/api';
import { microConfig, sameBits, uninterruptedParams, writeMicroDataset } from './helpers/pipeline';

jest.setTimeout(180_000);

const TOTAL = 4;
let dir: string;
let dataset: string;
let config: RunConfig;
let reference: Float32Array;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ddpm-resume-'));
  dataset = await writeMicroDataset(join(dir, 'data'));
  config = microConfig(TOTAL);
  await initBackend('tensorflow');
  reference = await uninterruptedParams(config, dataset);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One activity execution in this process, with its log lines. */
async function run<T>(fn: () => Promise<T>): Promise<{ result: T; log: string }> {
  const lines: string[] = [];
  const logger = new DefaultLogger('INFO', (entry) => lines.push(entry.message));
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 60_000 }, { logger });
  const result = (await env.run(fn)) as T;
  return { result, log: lines.join('\n') };
}

async function prepared(runId: string, storeUri: string) {
  const { result } = await run(() => prepareDataset({ runId, storeUri, dataset }));
  return (targetStep: number): TrainSegmentInput => ({
    runId,
    storeUri,
    datasetKey: result.datasetKey,
    config,
    targetStep,
    checkpointEvery: 2,
    keepCheckpoints: 10,
    backend: 'tensorflow',
  });
}

const segment = (input: TrainSegmentInput) =>
  run(async () => (await trainSegment(input)) as TrainSegmentResult);

test('the next segment in the same process uses the state it kept for the checkpoint it just wrote', async () => {
  const storeUri = join(dir, 'store-kept');
  const input = await prepared('kept', storeUri);
  await segment(input(2));
  const second = await segment(input(4));
  expect(second.result.resumedFromStep).toBe(2);
  expect(second.log).toMatch(
    /resuming from \S+\/kept\/checkpoints\/000000002 \(its state still in this process\)/,
  );
  const repo = new CheckpointRepository(new LocalDirStore(storeUri), 'kept');
  expect(sameBits((await repo.load(TOTAL)).state.params, reference)).toBe(true);
});

test('a checkpoint replaced in the store since this process wrote it is read from the store, not memory', async () => {
  const storeUri = join(dir, 'store-replaced');
  const input = await prepared('replaced', storeUri);
  await segment(input(2));
  // Another writer replaces step 2 with a different, valid checkpoint (e.g. a run restarted under the
  // same ID): a fresh process would resume from it, so this one must too.
  const repo = new CheckpointRepository(new LocalDirStore(storeUri), 'replaced');
  const theirs: TrainState = (await repo.load(2)).state;
  theirs.params = theirs.params.map((p) => p * 0.5);
  await repo.save(theirs, config);
  const expected = await trainFrom(structuredClone(theirs), TOTAL);

  const second = await segment(input(4));
  expect(second.result.resumedFromStep).toBe(2);
  expect(sameBits((await repo.load(TOTAL)).state.params, expected)).toBe(true);
  expect(second.log).toMatch(/resuming from \S+\/replaced\/checkpoints\/000000002$/m);
});

test('two segments of one run in one process never share (and both update) one kept state', async () => {
  const storeUri = join(dir, 'store-twice');
  const input = await prepared('twice', storeUri);
  await segment(input(2));
  // E.g. a segment retried after a lost heartbeat while its first attempt still runs in this process.
  const both = await Promise.all([segment(input(4)), segment(input(4))]);
  expect(both.map((b) => b.result.step)).toEqual([TOTAL, TOTAL]);
  const fromMemory = both.filter((b) => /its state still in this process/.test(b.log));
  expect(fromMemory).toHaveLength(1);
  const repo = new CheckpointRepository(new LocalDirStore(storeUri), 'twice');
  expect(sameBits((await repo.load(TOTAL)).state.params, reference)).toBe(true);
});

async function trainFrom(state: TrainState, steps: number): Promise<Float32Array> {
  const trainer = new Trainer({ config, data: await loadImageDataset(dataset), state });
  while (trainer.currentStep < steps) await trainer.step();
  const { params } = await trainer.hostState();
  trainer.dispose();
  return params;
}
