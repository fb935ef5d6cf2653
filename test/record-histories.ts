/**
 * Records the workflow histories that test/workflow-replay.test.ts replays: real runs of the micro U-Net
 * on a real Temporal dev server with real trainer processes (test/helpers/pipeline.ts), one JSON file per
 * workflow execution in test/fixtures/histories/. Re-record only on purpose (see
 * docs/workflow-versioning.md): the fixtures stand for runs that were in flight when the workflow code
 * changed, so the old ones must keep replaying; add new ones next to them.
 *
 *   npm run record-histories [-- --only single-worker,pause-resume] [--suffix after-patch-x] [--out DIR]
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import type { WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import * as prettier from 'prettier';
import { LocalDirStore } from '../store';
import { TRAINER_TASK_QUEUE, pauseSignal, resumeSignal } from '../workflows/api';
import { PipelineHarness, TrainerProcess, microConfig, sleep, writeMicroDataset } from './helpers/pipeline';

const REPO = resolve(__dirname, '..');
export const HISTORIES_DIR = join(REPO, 'test', 'fixtures', 'histories');

/** What a fixture file holds: the history plus where it came from. */
export interface HistoryFixture {
  scenario: string;
  description: string;
  /** The commit whose workflow code made the history (plus "-dirty" for uncommitted changes). */
  recordedWith: string;
  workflowId: string;
  /** 1-based position in the run's chain of executions (continue-as-new). */
  execution: number;
  history: unknown;
}

interface Scenario {
  description: string;
  run: (h: PipelineHarness, dataset: string) => Promise<WorkflowHandleWithFirstExecutionRunId>;
}

const manifestKey = (runId: string, step: number) =>
  `${runId}/checkpoints/${String(step).padStart(9, '0')}/manifest.json`;

async function waitForPhase(h: PipelineHarness, handle: WorkflowHandle, phase: string): Promise<void> {
  await h.waitFor(`phase ${phase}`, async () => (await h.status(handle)).phase === phase);
}

const SCENARIOS: Record<string, Scenario> = {
  'single-worker': {
    description: 'one trainer, three segments, a sample grid at the end',
    async run(h, dataset) {
      const runId = 'replay-single-worker';
      const handle = await h.startRun(h.input(runId, join(h.workdir, runId), dataset, microConfig(6), 2));
      await handle.result();
      return handle;
    },
  },
  'in-run-evaluation': {
    description: 'one trainer, evaluations (bits/dim) at step 2 and at the end beside training',
    async run(h, dataset) {
      const runId = 'replay-in-run-evaluation';
      const handle = await h.startRun({
        ...h.input(runId, join(h.workdir, runId), dataset, microConfig(4), 2),
        evaluation: { every: 2, metrics: ['bpd'], bpdImages: 4, bpdTimesteps: 2 },
      });
      await handle.result();
      return handle;
    },
  },
  'pause-resume': {
    description: 'paused mid-segment (the trainer checkpoints before acknowledging), then resumed',
    async run(h, dataset) {
      const runId = 'replay-pause-resume';
      const storeDir = join(h.workdir, runId);
      const handle = await h.startRun(h.input(runId, storeDir, dataset, microConfig(40), 20));
      await h.waitFor('the first checkpoint', () =>
        new LocalDirStore(storeDir).exists(manifestKey(runId, 20)),
      );
      await sleep(1000);
      await handle.signal(pauseSignal);
      await waitForPhase(h, handle, 'paused');
      await handle.signal(resumeSignal);
      await handle.result();
      return handle;
    },
  },
  cancel: {
    description: 'cancelled mid-segment: the trainer checkpoints, the run ends cancelled',
    async run(h, dataset) {
      const runId = 'replay-cancel';
      const storeDir = join(h.workdir, runId);
      const handle = await h.startRun(h.input(runId, storeDir, dataset, microConfig(40), 20));
      await h.waitFor('the first checkpoint', () =>
        new LocalDirStore(storeDir).exists(manifestKey(runId, 20)),
      );
      await sleep(1000);
      await handle.cancel();
      await handle.result().catch(() => undefined);
      return handle;
    },
  },
  'continue-as-new': {
    description: 'two segments per execution: three executions chained by continue-as-new',
    async run(h, dataset) {
      const runId = 'replay-continue-as-new';
      const input = h.input(runId, join(h.workdir, runId), dataset, microConfig(6), 1);
      input.schedule.segmentsPerExecution = 2;
      const handle = await h.startRun(input);
      await handle.result();
      return handle;
    },
  },
  'failure-budget': {
    description:
      'a store that cannot be written: prepareDataset fails 3 times in a row (4 attempts each), the run fails',
    async run(h, dataset) {
      const runId = 'replay-failure-budget';
      // The store's directory cannot exist: its parent is a file.
      const blocker = join(h.workdir, `${runId}-not-a-directory`);
      writeFileSync(blocker, 'x');
      const handle = await h.startRun(h.input(runId, join(blocker, 'store'), dataset, microConfig(6), 2));
      await handle.result().catch(() => undefined);
      return handle;
    },
  },
  'data-parallel-lost-worker': {
    description: '3 trainer slots; slot 2 is SIGKILLed mid-all-reduce and the run finishes on 2',
    async run(h, dataset) {
      const runId = 'replay-data-parallel-lost-worker';
      const key = randomBytes(24).toString('hex');
      const coordinator = await h.spawnCoordinator(key);
      const slot = (k: number, env: Record<string, string> = {}): TrainerProcess =>
        h.spawnTrainer({ DDPM_COORDINATOR_KEY: key, ...env }, [
          '--slot',
          String(k),
          ...(k === 0 ? [] : ['--no-shared']),
        ]);
      const every = 4;
      const killStep = every + 2;
      const trainers = [
        slot(0),
        slot(1),
        slot(2, { DDPM_FAULT_INJECTION: `kill-during-allreduce:${killStep}` }),
      ];
      await Promise.all(trainers.map((t) => t.ready()));
      const handle = await h.startRun({
        ...h.input(runId, join(h.workdir, runId), dataset, microConfig(3 * every), every),
        parallel: {
          workers: 3,
          minWorkers: 2,
          pool: TRAINER_TASK_QUEUE,
          coordinator,
          rendezvousSeconds: 5,
          peerTimeoutSeconds: 60,
          wire: 'fp32',
        },
      });
      await trainers[2].exited();
      await handle.result();
      // The slots also poll the shared queue (slot 0): stop them so later scenarios use their own trainer.
      await Promise.all(trainers.map((t) => (t.child.exitCode === null ? t.kill('SIGTERM') : null)));
      return handle;
    },
  },
};

function recordedWith(): string {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO, encoding: 'utf8' }).trim();
  const commit = git('rev-parse', '--short=12', 'HEAD');
  return git('status', '--porcelain', '--', 'workflows') === '' ? commit : `${commit}-dirty`;
}

/** Every execution of the run, first to last, following continue-as-new. */
async function executionHistories(
  h: PipelineHarness,
  handle: WorkflowHandleWithFirstExecutionRunId,
): Promise<unknown[]> {
  const out: unknown[] = [];
  let current: WorkflowHandle = h.client.workflow.getHandle(handle.workflowId, handle.firstExecutionRunId, {
    followRuns: false,
  });
  for (;;) {
    const history = await current.fetchHistory();
    out.push(JSON.parse(historyToJSON(history)));
    const last = history.events?.[history.events.length - 1];
    const next = last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
    if (!next) return out;
    current = h.client.workflow.getHandle(handle.workflowId, next, { followRuns: false });
  }
}

async function main(): Promise<void> {
  const o = new Command('record-histories')
    .description('Record the workflow histories replayed by test/workflow-replay.test.ts (real runs).')
    .option('--only <names>', `comma-separated subset of: ${Object.keys(SCENARIOS).join(', ')}`)
    .option('--out <dir>', 'where the JSON files go', HISTORIES_DIR)
    .option('--suffix <name>', 'write <scenario>.<name>.json, next to the older recordings (after a patch)')
    .parse()
    .opts<{ only?: string; out: string; suffix?: string }>();
  const names = o.only ? o.only.split(',') : Object.keys(SCENARIOS);
  for (const n of names) if (!SCENARIOS[n]) throw new Error(`--only: no scenario '${n}'`);
  const version = recordedWith();
  mkdirSync(o.out, { recursive: true });
  const h = await PipelineHarness.start();
  try {
    const dataset = await writeMicroDataset(join(h.workdir, 'data'));
    for (const name of names) {
      const scenario = SCENARIOS[name];
      process.stderr.write(`recording ${name}: ${scenario.description}\n`);
      // A trainer of its own per scenario (the data-parallel one brings its slots).
      const trainer = name === 'data-parallel-lost-worker' ? null : h.spawnTrainer();
      await trainer?.ready();
      const handle = await scenario.run(h, dataset);
      await trainer?.kill('SIGTERM');
      const histories = await executionHistories(h, handle);
      for (const [i, history] of histories.entries()) {
        const stem = o.suffix ? `${name}.${o.suffix}` : name;
        const file = join(o.out, histories.length === 1 ? `${stem}.json` : `${stem}.${i + 1}.json`);
        const fixture: HistoryFixture = {
          scenario: name,
          description: scenario.description,
          recordedWith: version,
          workflowId: handle.workflowId,
          execution: i + 1,
          history,
        };
        const text = await prettier.format(JSON.stringify(fixture), { parser: 'json' });
        writeFileSync(file, text);
        process.stderr.write(`  wrote ${file} (${(text.length / 1024).toFixed(0)} KiB)\n`);
      }
    }
  } finally {
    await h.stop();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`record-histories: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
