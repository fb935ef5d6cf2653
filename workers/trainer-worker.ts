/**
 * A trainer worker: one per GPU (or per machine on CPU). It hosts the dataset, training and sampling
 * activities and, unless --no-workflows, the TrainingRun workflow code. Training blocks its Node event loop
 * for a whole micro-batch at a time, so where steps are slow (CPU) run the workflows in a separate
 * control worker (--no-activities) and the trainers with --no-workflows, as the local stack does.
 *
 *   npx tsx workers/trainer-worker.ts [--backend auto] [--no-workflows | --no-activities]
 *
 * Connection: the standard Temporal environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS / API key);
 * default 127.0.0.1:7233. SIGINT/SIGTERM shut it down gracefully: a running segment checkpoints first.
 */
import { Command, Option } from 'commander';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from '../activities';
import { initBackend } from '../core/backend';
import { runCli } from '../cli/errors';
import { CONTROL_TASK_QUEUE, TRAINER_TASK_QUEUE } from '../workflows/api';
import { temporalSettings } from './temporal-config';

const program = new Command('trainer-worker')
  .description('Run a DDPM trainer worker (workflows + training activities) against Temporal')
  .addOption(
    new Option('--backend <name>', 'TF.js backend')
      .choices(['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'])
      .default('auto'),
  )
  .option('--no-workflows', 'poll only the trainer activity queue, not the workflow queue')
  .option('--no-activities', 'poll only the workflow queue (a control worker: no TF.js, never busy)')
  .option('--task-queue <name>', 'activity task queue', TRAINER_TASK_QUEUE)
  .option(
    '--shutdown-grace <seconds>',
    'how long a cancelled segment may take to checkpoint on shutdown',
    '120',
  );

interface Options {
  backend: 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
  workflows: boolean;
  activities: boolean;
  taskQueue: string;
  shutdownGrace: string;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`[trainer-worker ${process.pid}] ${line}\n`);
  if (!o.workflows && !o.activities)
    throw new Error('--no-workflows and --no-activities leave nothing to do');
  // Fail at start-up, not in the first activity, when the requested backend cannot run here.
  if (o.activities) await initBackend(o.backend, log);
  const t = temporalSettings();
  const connection = await NativeConnection.connect(t.connectionOptions);
  const workers: Worker[] = [];
  if (o.activities) {
    workers.push(
      await Worker.create({
        connection,
        namespace: t.namespace,
        taskQueue: o.taskQueue,
        activities,
        // One training segment at a time: it uses the whole accelerator (or all cores).
        maxConcurrentActivityTaskExecutions: 1,
        shutdownGraceTime: `${Number(o.shutdownGrace)}s`,
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
    `polling ${[o.taskQueue, ...(o.workflows ? [CONTROL_TASK_QUEUE] : [])].join(', ')} on ${t.address} (${t.namespace})`,
  );
  process.stdout.write('READY\n');
  try {
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    await connection.close();
  }
  log('stopped');
});
