/**
 * Pauses a run: the trainer checkpoints its last completed step and the run waits for `resume`.
 *
 *   npm run pause -- --run-id ID [--wait]
 */
import { Command } from 'commander';
import { pauseSignal } from '../workflows/api';
import { runCli } from './errors';
import { runBackend, waitForRun } from './run-control';
import { requireRun, stateName } from './run-executions';
import { runIdOption } from './run-input';
import { openTemporalSession } from './temporal-session';

const program = new Command('pause')
  .description(
    "Pause a running run: its trainer finishes the current step, checkpoints, and the run waits for 'resume' " +
      '(it holds no worker meanwhile).',
  )
  .requiredOption('--run-id <id>', 'the run (its workflow ID)', runIdOption)
  .option('--wait', 'return only once the run is paused')
  .addHelpText('after', '\nExample:\n  npm run pause -- --run-id cifar10-20250101-120000 --wait\n');

runCli(async () => {
  const o = program.parse().opts<{ runId: string; wait?: boolean }>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const session = await openTemporalSession(log);
  const d = await requireRun(session.client, o.runId, session.namespace);
  if (d.status.name !== 'RUNNING') throw new Error(`run ${o.runId} is not running (it ${stateName(d)})`);
  // The workflow (and the trainer, which checkpoints) must be hosted for the pause to take effect.
  const backend = await runBackend(session, o.runId);
  await session.ensureWorker(backend);
  await session.client.workflow.getHandle(o.runId).signal(pauseSignal);
  if (!o.wait) {
    process.stdout.write(
      `pause requested for run ${o.runId}; resume with: npm run resume -- --run-id ${o.runId}\n`,
    );
    return;
  }
  const s = await waitForRun(session, o.runId, backend, (status) => status.phase === 'paused');
  if (!s) throw new Error(`run ${o.runId} ended before it paused`);
  process.stdout.write(
    `run ${o.runId} paused at step ${s.step}; resume with: npm run resume -- --run-id ${o.runId}\n`,
  );
});
