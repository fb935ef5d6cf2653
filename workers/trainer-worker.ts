/**
 * A trainer worker: one per GPU (or per machine on CPU). It hosts the dataset, training and sampling
 * activities and, unless --no-workflows, the TrainingRun workflow code. With --slot k it also polls slot
 * k's own task queue, where data-parallel runs place one training activity per slot; give every trainer
 * of a cluster a different slot (0..N-1), and one GPU each (--gpu) or a set of cores (--cpus). Training blocks its Node event loop
 * for a whole micro-batch at a time, so where steps are slow (CPU) run the workflows in a separate
 * control worker (--no-activities) and the trainers with --no-workflows, as the local stack does.
 *
 *   npx tsx workers/trainer-worker.ts [--backend auto] [--no-workflows | --no-activities]
 *                                     [--slot k [--gpu i] [--cpus list] [--data-host addr]]
 *
 * Connection: the standard Temporal environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS / API key);
 * default 127.0.0.1:7233. SIGINT/SIGTERM shut it down gracefully: a running segment checkpoints first.
 */
import { execFileSync } from 'node:child_process';
import { Command, Option } from 'commander';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from '../activities';
import { initBackend } from '../core/backend';
import { BACKEND_CHOICES, type BackendChoice } from '../core/backend/names';
import { gpuChoiceProblem, listNvidiaGpus } from '../core/backend/nvidia';
import { runCli } from '../common/errors';
import { CONTROL_TASK_QUEUE, TRAINER_TASK_QUEUE, slotTaskQueue } from '../workflows/api';
import { temporalSettings } from './temporal-config';

const program = new Command('trainer-worker')
  .description('Run a DDPM trainer worker (workflows + training activities) against Temporal')
  .addOption(new Option('--backend <name>', 'TF.js backend').choices(BACKEND_CHOICES).default('auto'))
  .option('--no-workflows', 'poll only the trainer activity queue, not the workflow queue')
  .option('--no-activities', 'poll only the workflow queue (a control worker: no TF.js, never busy)')
  .option(
    '--task-queue <name>',
    'shared activity task queue (and the prefix of slot queues)',
    TRAINER_TASK_QUEUE,
  )
  .option(
    '--slot <k>',
    "also poll this trainer slot's queue (data-parallel runs; needs DDPM_COORDINATOR_KEY)",
  )
  .option('--no-shared', 'with --slot: poll only the slot queue (leave dataset and sampling to others)')
  .option('--gpu <index>', 'the GPU this trainer uses (sets CUDA_VISIBLE_DEVICES for the native GPU backend)')
  .option(
    '--cpus <list>',
    'pin this trainer to these CPU cores, e.g. 0 or 0-3 (Linux taskset; on CPU-only machines one set per trainer)',
  )
  .option(
    '--data-host <address>',
    'address peers reach this trainer at for gradient exchange (default DDPM_DATA_HOST or 127.0.0.1)',
  )
  .option(
    '--shutdown-grace <seconds>',
    'how long a cancelled segment may take to checkpoint on shutdown',
    '120',
  );

interface Options {
  backend: BackendChoice;
  workflows: boolean;
  activities: boolean;
  taskQueue: string;
  shutdownGrace: string;
  slot?: string;
  shared: boolean;
  gpu?: string;
  cpus?: string;
  dataHost?: string;
}

/** Digits only: Number() would also take '', ' 1' and '0x1'. */
function nonNegativeInt(flag: string, raw: string): number {
  if (!/^\d+$/.test(raw)) throw new Error(`${flag}: expected a whole number >= 0, got '${raw}'`);
  return Number(raw);
}

function seconds(flag: string, raw: string): number {
  if (!/^\d+(\.\d+)?$/.test(raw)) throw new Error(`${flag}: expected a number of seconds, got '${raw}'`);
  return Number(raw);
}

function pinToCpus(list: string): void {
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(list)) {
    throw new Error(`--cpus: expected a core list like 0, 0-3 or 0,2; got '${list}'`);
  }
  try {
    execFileSync('taskset', ['-a', '-p', '-c', list, String(process.pid)], { stdio: 'pipe' });
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new Error(`--cpus ${list}: could not pin this process with taskset (${why})`);
  }
}

/** Settings that must be in the environment before TF.js loads its native library. */
function applyDeviceOptions(o: Options): void {
  if (o.gpu !== undefined) {
    const index = nonNegativeInt('--gpu', o.gpu);
    const problem = gpuChoiceProblem(index, listNvidiaGpus());
    if (problem) throw new Error(problem);
    // Read by CUDA when TensorFlow loads (initBackend, below): this process sees that one GPU only.
    process.env.CUDA_VISIBLE_DEVICES = String(index);
  }
  // TensorFlow sizes its thread pools from the CPU affinity it finds at load time (it ignores the
  // TF_NUM_*_THREADS variables here), so pinning before the backend loads also sizes the pools.
  if (o.cpus !== undefined) pinToCpus(o.cpus);
  if (o.dataHost !== undefined) process.env.DDPM_DATA_HOST = o.dataHost;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`[trainer-worker ${process.pid}] ${line}\n`);
  if (!o.workflows && !o.activities)
    throw new Error('--no-workflows and --no-activities leave nothing to do');
  const slot = o.slot === undefined ? undefined : nonNegativeInt('--slot', o.slot);
  const shutdownGrace = seconds('--shutdown-grace', o.shutdownGrace);
  if (slot !== undefined && !o.activities) throw new Error('--slot needs activities (drop --no-activities)');
  if (slot === undefined && !o.shared) throw new Error('--no-shared only makes sense with --slot');
  if (slot !== undefined && !process.env.DDPM_COORDINATOR_KEY) {
    throw new Error(
      '--slot: DDPM_COORDINATOR_KEY is not set; data-parallel trainers authenticate to the coordinator with it',
    );
  }
  applyDeviceOptions(o);
  const activityQueues = o.activities
    ? [...(o.shared ? [o.taskQueue] : []), ...(slot !== undefined ? [slotTaskQueue(o.taskQueue, slot)] : [])]
    : [];
  // Fail at start-up, not in the first activity, when the requested backend cannot run here.
  if (o.activities) await initBackend(o.backend, log);
  const t = temporalSettings();
  const connection = await NativeConnection.connect(t.connectionOptions);
  const workers: Worker[] = [];
  for (const taskQueue of activityQueues) {
    workers.push(
      await Worker.create({
        connection,
        namespace: t.namespace,
        taskQueue,
        activities,
        // One training segment at a time: it uses the whole accelerator (or all cores).
        maxConcurrentActivityTaskExecutions: 1,
        shutdownGraceTime: `${shutdownGrace}s`,
        // Heartbeats carry live progress (step, loss, img/s) to the UI and CLI: send them every few seconds
        // instead of the SDK's default of up to 60 s.
        maxHeartbeatThrottleInterval: '3s',
        defaultHeartbeatThrottleInterval: '3s',
      }),
    );
  }
  if (o.workflows) {
    workers.push(
      await Worker.create({
        connection,
        namespace: t.namespace,
        taskQueue: CONTROL_TASK_QUEUE,
        workflowsPath: require.resolve('../workflows'),
      }),
    );
  }
  log(
    `polling ${[...activityQueues, ...(o.workflows ? [CONTROL_TASK_QUEUE] : [])].join(', ')} on ${t.address} (${t.namespace})`,
  );
  process.stdout.write('READY\n');
  try {
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    await connection.close();
  }
  log('stopped');
});
