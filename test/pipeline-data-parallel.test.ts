/**
 * Data-parallel training through the real pipeline: a Temporal dev server, a coordinator process, trainer
 * processes on per-slot task queues exchanging gradients over loopback, a real store. Runs on N workers
 * must match the single-worker run within float tolerance, repeat bit for bit for a fixed N, survive a
 * worker SIGKILLed mid-all-reduce, and ignore a worker with the wrong key.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { initBackend } from '../core/backend';
import type { RunConfig } from '../core/presets';
import { LocalDirStore } from '../store';
import { CheckpointRepository } from '../core/checkpoint/repository';
import {
  ParallelSettings,
  TRAINER_TASK_QUEUE,
  TrainingRunInput,
  pauseSignal,
  resumeSignal,
} from '../workflows/api';
import {
  PipelineHarness,
  TrainerProcess,
  microConfig,
  sameBits,
  uninterruptedParams,
  writeMicroDataset,
} from './helpers/pipeline';

jest.setTimeout(400_000);

const TOTAL = 24;
const EVERY = 8;
const KEY = randomBytes(24).toString('hex');
let h: PipelineHarness;
let dataset: string;
let config: RunConfig;
let reference: Float32Array;
let coordinator: string;
const slots: TrainerProcess[] = [];

const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

function spawnSlot(slot: number, env: Record<string, string> = {}): TrainerProcess {
  // Slot 0 also serves the shared queue (dataset preparation, sample grids).
  const args = ['--slot', String(slot), ...(slot === 0 ? [] : ['--no-shared'])];
  return h.spawnTrainer({ DDPM_COORDINATOR_KEY: KEY, ...env }, args);
}

function input(runId: string, storeDir: string, parallel: Partial<ParallelSettings>): TrainingRunInput {
  return {
    ...h.input(runId, storeDir, dataset, config, EVERY),
    parallel: {
      workers: 2,
      minWorkers: 1,
      pool: TRAINER_TASK_QUEUE,
      coordinator,
      rendezvousSeconds: 5,
      peerTimeoutSeconds: 60,
      wire: 'fp32',
      ...parallel,
    },
  };
}

beforeAll(async () => {
  h = await PipelineHarness.start();
  dataset = await writeMicroDataset(join(h.workdir, 'data'));
  config = microConfig(TOTAL);
  await initBackend('tensorflow');
  reference = await uninterruptedParams(config, dataset);
  coordinator = await h.spawnCoordinator(KEY);
  slots.push(spawnSlot(0), spawnSlot(1));
  await Promise.all(slots.map((s) => s.ready()));
});

afterAll(async () => {
  await h?.stop();
});

test('a run on 2 workers repeats bit for bit and matches the 1-worker run', async () => {
  const storeDir = join(h.workdir, 'store-n2');
  const runs: Float32Array[] = [];
  for (const runId of ['n2-a', 'n2-b']) {
    const handle = await h.startRun(input(runId, storeDir, {}));
    const result = await handle.result();
    expect(result.finalStep).toBe(TOTAL);
    const status = await h.status(handle);
    expect(status.workers).toMatchObject({ world: 2, slots: [0, 1] });
    runs.push(await h.finalParams(storeDir, runId, TOTAL));
  }
  expect(sameBits(runs[0], runs[1])).toBe(true);
  // Each rank holds one of the single worker's two micro-batches, and the ring adds their gradients in
  // the order its accumulation does: the very same bits. (Other splits agree within float tolerance:
  // data-parallel-step.test.ts and the 3-worker run below.)
  expect(sameBits(runs[0], reference)).toBe(true);
  expect(slots[0].log).toMatch(/rank 0 of 2 \(slots 0,1\)/);
  expect(slots[1].log).toMatch(/rank 1 of 2 \(slots 0,1\)/);
});

test('a worker SIGKILLed during an all-reduce: the others fail fast, and the run finishes on the survivors', async () => {
  const dump = () => [...slots, doomed].map((s, i) => `---- trainer ${i}\n${s.log.slice(-3000)}`).join('\n');
  try {
    await killOneOfThree();
  } catch (err) {
    console.log(dump());
    throw err;
  }
});

let doomed: TrainerProcess;
async function killOneOfThree(): Promise<void> {
  const runId = 'kill-one-of-three';
  const storeDir = join(h.workdir, 'store-kill');
  const killStep = EVERY + 4;
  doomed = spawnSlot(2, { DDPM_FAULT_INJECTION: `kill-during-allreduce:${killStep}` });
  await doomed.ready();
  const handle = await h.startRun(input(runId, storeDir, { workers: 3, minWorkers: 2 }));
  await doomed.exited();
  const killedAt = Date.now();
  expect(doomed.log).toContain(`fault injection: SIGKILL during the all-reduce of step ${killStep}`);
  // Both survivors were mid-reduce: each must get an error within seconds, not hang.
  const interrupted = new RegExp(`interrupted at step ${killStep - 1} \\(`);
  await h.waitFor(
    'both survivors to abort the reduce',
    async () => slots.every((s) => interrupted.test(s.log)),
    20_000,
  );
  const abortSeconds = (Date.now() - killedAt) / 1000;
  expect(abortSeconds).toBeLessThan(10);

  const result = await handle.result();
  expect(result.finalStep).toBe(TOTAL);
  const status = await h.status(handle);
  expect(status.workers).toMatchObject({ world: 2, slots: [0, 1] });
  // Rank 0 checkpointed the last step every rank completed; the next attempt resumed there with 2.
  expect(slots[0].log).toMatch(new RegExp(`rank 0 of 2 \\(slots 0,1\\) from step ${killStep - 1}`));
  expect(
    await new LocalDirStore(storeDir).exists(
      `${runId}/checkpoints/${String(killStep - 1).padStart(9, '0')}/manifest.json`,
    ),
  ).toBe(true);
  const params = await h.finalParams(storeDir, runId, TOTAL);
  expect(maxAbsDiff(params, reference)).toBeLessThan(1e-4);
  console.log(
    `SIGKILL of 1 of 3 mid-reduce: survivors aborted within ${abortSeconds.toFixed(1)} s; ` +
      `final max |dw| vs N=1: ${maxAbsDiff(params, reference).toExponential(2)}`,
  );
}

test('a replacement started for a dead slot joins a later segment: the ring grows back to 3', async () => {
  const runId = 'replacement';
  const storeDir = join(h.workdir, 'store-replacement');
  const total = 5 * EVERY;
  const longer = microConfig(total);
  const killStep = EVERY + 2;
  const first = spawnSlot(2, { DDPM_FAULT_INJECTION: `kill-during-allreduce:${killStep}` });
  await first.ready();
  const run = { ...input(runId, storeDir, { workers: 3, minWorkers: 2 }), config: longer };
  const handle = await h.startRun(run);
  await first.exited();
  const replacement = spawnSlot(2);
  const result = await handle.result();
  expect(result.finalStep).toBe(total);
  expect((await h.status(handle)).workers).toMatchObject({ world: 3, slots: [0, 1, 2] });
  expect(replacement.log).toMatch(/rank 2 of 3 \(slots 0,1,2\)/);
  const params = await h.finalParams(storeDir, runId, total);
  const longerReference = await uninterruptedParams(longer, dataset);
  expect(maxAbsDiff(params, longerReference)).toBeLessThan(1e-4);
  await replacement.kill('SIGTERM');
});

test('a worker with the wrong key is refused and the run (continuing as new each segment) is unaffected; a worker without a key does not start', async () => {
  const impostor = spawnSlot(2, { DDPM_COORDINATOR_KEY: 'not-the-cluster-key' });
  await impostor.ready();
  const runId = 'wrong-key';
  const storeDir = join(h.workdir, 'store-key');
  const run = input(runId, storeDir, { workers: 3, minWorkers: 2, rendezvousSeconds: 3 });
  // One segment per execution: the slots that answered are carried through continue-as-new.
  run.schedule.segmentsPerExecution = 1;
  const handle = await h.startRun(run);
  const result = await handle.result();
  expect(result.finalStep).toBe(TOTAL);
  expect((await handle.describe()).runId).not.toBe(handle.firstExecutionRunId);
  expect(impostor.log).toMatch(/refused/i);
  expect(impostor.log).not.toMatch(/rank \d of/);
  expect((await h.status(handle)).workers).toMatchObject({ world: 2, slots: [0, 1] });
  // Two members all the way: exactly the bits of the other 2-worker runs (and so of the 1-worker run).
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);

  const keyless = h.spawnTrainer({ DDPM_COORDINATOR_KEY: '' }, ['--slot', '3']);
  expect(await keyless.exited()).toBe(1);
  expect(keyless.log).toMatch(/DDPM_COORDINATOR_KEY is not set/);
  expect(keyless.log).not.toMatch(/\n\s+at /); // a one-line error, not a stack trace
});

test('a paused 2-worker run stops at a checkpoint both ranks agree on; resumed, it ends with the same bits', async () => {
  const runId = 'pause-n2';
  const storeDir = join(h.workdir, 'store-pause');
  const handle = await h.startRun(input(runId, storeDir, {}));
  const store = new LocalDirStore(storeDir);
  await h.waitFor('the first checkpoint', () =>
    store.exists(`${runId}/checkpoints/${String(EVERY).padStart(9, '0')}/manifest.json`),
  );
  await handle.signal(pauseSignal);
  const paused = await h.waitFor('the run to pause', async () => {
    const s = await h.status(handle);
    return s.phase === 'paused' ? s : null;
  });
  const newest = (await new CheckpointRepository(store, runId).listSteps())[0];
  expect(paused.note).toMatch(new RegExp(`paused at step ${newest}\\b`));
  expect(paused.step).toBe(newest);
  expect(paused.lastCheckpointKey).toBe(`${runId}/checkpoints/${String(newest).padStart(9, '0')}`);
  expect(newest).toBeGreaterThanOrEqual(EVERY);
  expect(newest).toBeLessThan(TOTAL);
  await handle.signal(resumeSignal);
  const result = await handle.result();
  expect(result.finalStep).toBe(TOTAL);
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);
});
