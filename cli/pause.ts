/**
 * Pauses a run: the trainer checkpoints its last completed step and the run waits for `resume`.
 *
 *   npm run pause -- --run-id ID [--wait]
 */
import { Command } from 'commander';
import { pauseSignal } from '../workflows/api';
import { runCli } from '../common/errors';
import { controlRunningRun, waitForRun } from './run-control';
import { runIdOption } from './run-input';

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
  // The workflow (and the trainers, which checkpoint) must be hosted for the pause to take effect.
  const { session, handle, needs } = await controlRunningRun(o.runId, log);
  await handle.signal(pauseSignal);
  if (!o.wait) {
    process.stdout.write(
      `pause requested for run ${o.runId}; resume with: npm run resume -- --run-id ${o.runId}\n`,
    );
    return;
  }
  const s = await waitForRun(session, o.runId, needs, (status) => status.phase === 'paused');
  if (!s) throw new Error(`run ${o.runId} ended before it paused`);
  process.stdout.write(
    `run ${o.runId} paused at step ${s.step}; resume with: npm run resume -- --run-id ${o.runId}\n`,
  );
});
