/**
 * The failure behaviour of a training run, proven against a real Temporal dev server, real trainer
 * processes (SIGKILLed for real) and a real store: each run must finish with exactly the weights of an
 * uninterrupted run with the same seed on the same backend.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import type { RunConfig } from '../core/presets';
import { LocalDirStore } from '../store';
import { pauseSignal, resumeSignal } from '../workflows/api';
import {
  PipelineHarness,
  microConfig,
  sameBits,
  uninterruptedParams,
  writeMicroDataset,
} from './helpers/pipeline';

jest.setTimeout(300_000);

const TOTAL = 60;
const EVERY = 20;
// Where a trainer stops stepping (and keeps heartbeating) until its segment is cancelled, so a pause,
// cancel or kill lands mid-segment however fast the machine is.
const HOLD = EVERY + 5;
const holding = { DDPM_FAULT_INJECTION: `hold-after-step:${HOLD}` };
const holdLog = `fault injection: holding after step ${HOLD}`;
let h: PipelineHarness;
let dataset: string;
let reference: Float32Array;
let config: RunConfig;

beforeAll(async () => {
  h = await PipelineHarness.start();
  dataset = await writeMicroDataset(join(h.workdir, 'data'));
  config = microConfig(TOTAL);
  // The uninterrupted run, in this process, on the backend the trainers use.
  await initBackend('tensorflow');
  reference = await uninterruptedParams(config, dataset);
});

afterAll(async () => {
  await h?.stop();
});

const manifestKey = (runId: string, step: number) =>
  `${runId}/checkpoints/${String(step).padStart(9, '0')}/manifest.json`;

test('a trainer SIGKILLed mid-segment is replaced and the run ends with the uninterrupted weights', async () => {
  const runId = 'kill-mid-segment';
  const storeDir = join(h.workdir, 'store-kill');
  const store = new LocalDirStore(storeDir);
  const first = h.spawnTrainer(holding);
  await first.ready();
  const handle = await h.startRun(h.input(runId, storeDir, dataset, config, EVERY));
  await h.waitFor('the trainer a few steps into the second segment', async () => first.log.includes(holdLog));
  await first.kill('SIGKILL');
  const killedAt = Date.now();
  const nextCheckpointExisted = await store.exists(manifestKey(runId, 2 * EVERY));

  const second = h.spawnTrainer();
  await h.waitFor('the replacement trainer to resume', async () => second.log.includes('resuming from'));
  const recoverySeconds = (Date.now() - killedAt) / 1000;
  const result = await handle.result();

  expect(nextCheckpointExisted).toBe(false); // so the kill did cost work since the last checkpoint
  expect(second.log).toMatch(new RegExp(`resuming from \\S+/${runId}/checkpoints/0+${EVERY}\\b`));
  expect(result.finalStep).toBe(TOTAL);
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);
  console.log(
    `kill -> training resumed on a new trainer: ${recoverySeconds.toFixed(1)} s (heartbeat timeout 5 s)`,
  );
  await second.kill('SIGTERM');
});

test('a trainer killed while writing a checkpoint leaves no usable half-checkpoint; the run resumes from the one before', async () => {
  const runId = 'kill-during-checkpoint';
  const storeDir = join(h.workdir, 'store-ckpt');
  const store = new LocalDirStore(storeDir);
  const first = h.spawnTrainer({ DDPM_FAULT_INJECTION: `kill-during-checkpoint:${2 * EVERY}` });
  await first.ready();
  const handle = await h.startRun(h.input(runId, storeDir, dataset, config, EVERY));
  await first.exited();
  const dir = `${runId}/checkpoints/${String(2 * EVERY).padStart(9, '0')}`;
  expect(first.log).toContain(`fault injection: SIGKILL after writing ${dir}/model.safetensors`);
  expect(await store.exists(`${dir}/model.safetensors`)).toBe(true);
  expect(await store.exists(`${dir}/manifest.json`)).toBe(false);
  expect(await new CheckpointRepository(store, runId).listSteps()).toEqual([EVERY]);

  const second = h.spawnTrainer();
  const result = await handle.result();
  expect(second.log).toMatch(new RegExp(`resuming from \\S+/${runId}/checkpoints/0+${EVERY}\\b`));
  expect(result.finalStep).toBe(TOTAL);
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);
  await second.kill('SIGTERM');
});

test('pause checkpoints mid-segment; a corrupted newest checkpoint is detected by checksum and skipped on resume', async () => {
  const runId = 'pause-corrupt-resume';
  const storeDir = join(h.workdir, 'store-corrupt');
  const store = new LocalDirStore(storeDir);
  const repo = new CheckpointRepository(store, runId);
  const first = h.spawnTrainer(holding);
  await first.ready();
  const handle = await h.startRun(h.input(runId, storeDir, dataset, config, EVERY));
  await h.waitFor('the trainer a few steps into the second segment', async () => first.log.includes(holdLog));
  await handle.signal(pauseSignal);
  const paused = await h.waitFor('the run to pause', async () => {
    const s = await h.status(handle);
    return s.phase === 'paused' ? s : null;
  });
  const newest = (await repo.listSteps())[0];
  expect(newest).toBe(HOLD); // the pause wrote its own checkpoint mid-segment
  // The run reports the step the trainer stopped and checkpointed at, not the segment's start.
  expect(paused.step).toBe(newest);
  expect(paused.note).toBe(`paused at step ${newest}; signal 'resume' to continue`);
  expect(paused.lastCheckpointKey).toBe(repo.keyFor(newest));
  expect((await handle.describe()).searchAttributes.DdpmStep).toEqual([newest]);
  const valid = await repo.newestValid(config);
  expect(valid?.checkpoint.state.step).toBe(newest);

  // Flip one byte of the newest checkpoint, and lose the trainer that holds the state in memory.
  const file = join(storeDir, repo.keyFor(newest), 'model.safetensors');
  const bytes = readFileSync(file);
  bytes[bytes.length - 17] ^= 0x40;
  writeFileSync(file, bytes);
  await first.kill('SIGKILL');

  const second = h.spawnTrainer();
  await second.ready();
  await handle.signal(resumeSignal);
  const result = await handle.result();
  expect(second.log).toMatch(
    new RegExp(`checkpoint ${newest} skipped: .*model\\.safetensors: checksum mismatch`),
  );
  expect(second.log).toMatch(new RegExp(`resuming from \\S+/${runId}/checkpoints/0+${EVERY}\\b`));
  expect(result.finalStep).toBe(TOTAL);
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);
  await second.kill('SIGTERM');
});

test('a Temporal server restart (same database) mid-run does not stop the run', async () => {
  const runId = 'temporal-restart';
  const storeDir = join(h.workdir, 'store-restart');
  const store = new LocalDirStore(storeDir);
  const trainer = h.spawnTrainer();
  await trainer.ready();
  const handle = await h.startRun(h.input(runId, storeDir, dataset, config, EVERY));
  await h.waitFor('the first checkpoint', () => store.exists(manifestKey(runId, EVERY)));
  await h.server.restart();
  const result = await h.waitFor('the result after the restart', () => handle.result(), 180_000);
  expect(result.finalStep).toBe(TOTAL);
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);
  await trainer.kill('SIGTERM');
});

test('cancel stops the run with a consistent checkpoint and marks it cancelled; restarting it finishes the run', async () => {
  const runId = 'cancelled-run';
  const storeDir = join(h.workdir, 'store-cancel');
  const store = new LocalDirStore(storeDir);
  const trainer = h.spawnTrainer(holding);
  await trainer.ready();
  const handle = await h.startRun(h.input(runId, storeDir, dataset, config, EVERY));
  await h.waitFor('the trainer a few steps into the second segment', async () =>
    trainer.log.includes(holdLog),
  );
  await handle.cancel();
  await expect(handle.result()).rejects.toThrow(WorkflowFailedError);
  const resume = await new CheckpointRepository(store, runId).newestValid(config);
  expect(resume?.skipped).toEqual([]);
  const stoppedAt = resume?.checkpoint.state.step;
  expect(stoppedAt).toBe(HOLD);
  const described = await handle.describe();
  expect(described.status.name).toBe('CANCELLED');
  expect(described.searchAttributes.DdpmStatus).toEqual(['cancelled']);
  // What `cancel --wait` prints: the step of the checkpoint the trainer wrote as it stopped.
  expect(described.searchAttributes.DdpmStep).toEqual([stoppedAt]);
  expect((described.memo as { checkpoint?: string }).checkpoint).toBe(
    `${storeDir}/${runId}/checkpoints/${String(stoppedAt).padStart(9, '0')}`,
  );

  // Started again with the very same input, the run picks up from its newest checkpoint and finishes
  // with the uninterrupted weights.
  const again = await h.client.workflow.start('trainingRun', {
    workflowId: runId,
    taskQueue: 'ddpm-control',
    args: [h.input(runId, storeDir, dataset, config, EVERY)],
  });
  const result = await again.result();
  expect(result.finalStep).toBe(TOTAL);
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);
  await trainer.kill('SIGTERM');
});

test('a run continues as new every few segments and still ends with the uninterrupted weights', async () => {
  const runId = 'continue-as-new';
  const storeDir = join(h.workdir, 'store-can');
  const trainer = h.spawnTrainer();
  await trainer.ready();
  const input = h.input(runId, storeDir, dataset, config, EVERY / 2);
  input.schedule.segmentsPerExecution = 2;
  const handle = await h.startRun(input);
  const result = await handle.result();
  expect(result.finalStep).toBe(TOTAL);
  // 6 segments at 2 per execution: the first execution and two continuations.
  const executions = await h.waitFor('visibility to list all three executions', async () => {
    const found = [];
    for await (const e of h.client.workflow.list({ query: `WorkflowId = '${runId}'` })) found.push(e);
    return found.length >= 3 ? found : null;
  });
  expect(executions.length).toBe(3);
  expect(sameBits(await h.finalParams(storeDir, runId, TOTAL), reference)).toBe(true);
  await trainer.kill('SIGTERM');
});
