/**
 * Failures that retrying cannot fix end the run, with the cause in its status, instead of looping while
 * it looks "running"; failures of the infrastructure (a trainer lost again and again) are waited out.
 * A real Temporal dev server, real trainer processes, a real store.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { initBackend } from '../core/backend';
import { writePngGrid } from '../core/data';
import type { RunConfig } from '../core/presets';
import { LocalDirStore } from '../store';
import {
  PipelineHarness,
  TrainerProcess,
  microConfig,
  sameBits,
  uninterruptedParams,
  writeMicroDataset,
} from './helpers/pipeline';

jest.setTimeout(600_000);

let h: PipelineHarness;
let dataset: string;
let trainer: TrainerProcess | null = null;

beforeAll(async () => {
  h = await PipelineHarness.start();
  dataset = await writeMicroDataset(join(h.workdir, 'data'));
});

afterEach(async () => {
  if (trainer && trainer.child.exitCode === null) await trainer.kill('SIGKILL');
  trainer = null;
});

afterAll(async () => {
  await h?.stop();
});

/** Each scheduled run of `activity` and the attempt it ended on, from the workflow's history. */
async function activityRuns(handle: WorkflowHandle, activity: string): Promise<number[]> {
  const scheduled = new Set<string>();
  const attempts = new Map<string, number>();
  for (const e of (await handle.fetchHistory()).events ?? []) {
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === activity)
      scheduled.add(String(e.eventId));
    const started = e.activityTaskStartedEventAttributes;
    if (started && scheduled.has(String(started.scheduledEventId)))
      attempts.set(String(started.scheduledEventId), started.attempt ?? 1);
  }
  return [...scheduled].map((id) => attempts.get(id) ?? 0);
}

async function failedRun(handle: WorkflowHandle): Promise<{ note: string | null; status: string }> {
  await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
  const s = await h.status(handle);
  expect(s.phase).toBe('failed');
  const described = await handle.describe();
  expect(described.searchAttributes.DdpmStatus).toEqual(['failed']);
  return { note: s.note, status: described.status.name };
}

test('an unreadable store fails the run once its failure budget is spent, naming the cause', async () => {
  trainer = h.spawnTrainer();
  await trainer.ready();
  // A store whose directory cannot exist (its parent is a file): every write fails the same way.
  const blocker = join(h.workdir, 'not-a-directory');
  writeFileSync(blocker, 'x');
  const input = h.input('unreadable-store', join(blocker, 'store'), dataset, microConfig(20), 10);
  const handle = await h.startRun(input);
  const { note, status } = await failedRun(handle);
  expect(status).toBe('FAILED');
  expect(note).toMatch(
    /^preparing the dataset failed 3 times in a row \(4 attempts each\), so the run stopped: .*not-a-directory/,
  );
  // Bounded: three runs of the activity, each on its fourth and last attempt; never a training segment.
  expect(await activityRuns(handle, 'prepareDataset')).toEqual([4, 4, 4]);
  expect(await activityRuns(handle, 'trainSegment')).toEqual([]);
});

test('a dataset whose images do not fit the model fails the run at once, on the first attempt', async () => {
  trainer = h.spawnTrainer();
  await trainer.ready();
  const base = microConfig(20);
  const config: RunConfig = { ...base, model: { ...base.model, imageSize: 16 } };
  const handle = await h.startRun(h.input('wrong-size', join(h.workdir, 'store-size'), dataset, config, 10));
  const { note } = await failedRun(handle);
  expect(note).toBe("dataset images are 8x8x3 but preset 'test-micro' expects 16x16x3");
  expect(await activityRuns(handle, 'trainSegment')).toEqual([1]);
});

test('a micro-batch the backend cannot allocate fails the run with the --micro-batch to try', async () => {
  // Full-resolution attention on 512x512 images: a 275 GB score matrix per image, refused at once.
  const big = join(h.workdir, 'data-512');
  mkdirSync(big, { recursive: true });
  for (let i = 0; i < 2; i++) {
    const pixels = Uint8Array.from({ length: 512 * 512 * 3 }, (_, j) => (j * (i + 3)) % 256);
    await writePngGrid(join(big, `img-${i}.png`), pixels, 1, 512, 512, 3, { padding: 0 });
  }
  const base = microConfig(4);
  const config: RunConfig = {
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
    train: { ...base.train, batchSize: 2, microBatchSize: 2 },
  };
  trainer = h.spawnTrainer();
  await trainer.ready();
  const input = h.input('out-of-memory', join(h.workdir, 'store-oom'), big, config, 2);
  // The heartbeat timeout must outlast the slowest micro-batch, here a forward pass at 512x512.
  input.timeouts.heartbeatSeconds = 300;
  const handle = await h.startRun(input);
  const { note } = await failedRun(handle);
  expect(note).toMatch(
    /^a micro-batch of 2 images does not fit in the tensorflow backend's memory \(tensorflow: OOM when allocating .*\); try --micro-batch 1 /,
  );
  expect(await activityRuns(handle, 'trainSegment')).toEqual([1]);
  expect(trainer.child.exitCode).toBeNull(); // the worker lives on: no crash loop
});

test('a trainer lost more often than an activity has attempts is waited out; the run ends with the uninterrupted weights', async () => {
  const TOTAL = 8;
  const config = microConfig(TOTAL);
  await initBackend('tensorflow');
  const reference = await uninterruptedParams(config, dataset);
  const storeDir = join(h.workdir, 'store-lost');
  const handle = await h.startRun(h.input('lost-again', storeDir, dataset, config, TOTAL / 2));
  // Five trainers in turn, each SIGKILLed while writing the first checkpoint: five lost attempts, one
  // more than an activity gets, so the workflow itself has to schedule the segment again.
  for (let i = 0; i < 5; i++) {
    trainer = h.spawnTrainer({ DDPM_FAULT_INJECTION: `kill-during-checkpoint:${TOTAL / 2}` });
    await trainer.exited();
    expect(trainer.log).toContain('fault injection: SIGKILL');
  }
  const waiting = await h.status(handle);
  expect(waiting.phase).toBe('training');
  trainer = h.spawnTrainer();
  const result = await handle.result();
  expect(result.finalStep).toBe(TOTAL);
  expect(sameBits(await h.finalParams(storeDir, 'lost-again', TOTAL), reference)).toBe(true);
  // The first segment: a run of the activity that lost all 4 of its attempts, then one that lost its
  // first and finished on its second (kill number 5); then the second segment.
  expect(await activityRuns(handle, 'trainSegment')).toEqual([4, 2, 1]);
  expect(await new LocalDirStore(storeDir).exists('lost-again/latest')).toBe(true);
});
