/**
 * Cancels a run: the trainer checkpoints its last completed step, then the run ends as cancelled.
 *
 *   npm run cancel -- --run-id ID [--wait]
 */
import { Command } from 'commander';
import { runCli } from '../common/errors';
import { controlRunningRun, waitForRun } from './run-control';
import { runIdOption } from './run-input';
import { formatNumber, runOutcome, runRecord } from './run-report';

const program = new Command('cancel')
  .description(
    "Cancel a running run. Its trainer checkpoints the last completed step first, so 'resume' can continue it later.",
  )
  .requiredOption('--run-id <id>', 'the run (its workflow ID)', runIdOption)
  .option('--wait', 'return only once the run has ended')
  .addHelpText('after', '\nExample:\n  npm run cancel -- --run-id cifar10-20250101-120000 --wait\n');

runCli(async () => {
  const o = program.parse().opts<{ runId: string; wait?: boolean }>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const { session, handle, needs } = await controlRunningRun(o.runId, log);
  await handle.cancel();
  const resumeHint = `continue it later with: npm run resume -- --run-id ${o.runId}`;
  if (!o.wait) {
    process.stdout.write(`cancellation requested for run ${o.runId}; ${resumeHint}\n`);
    return;
  }
  await waitForRun(session, o.runId, needs);
  const closed = await handle.describe();
  const outcome = await runOutcome(handle, closed);
  const record = runRecord(closed);
  process.stdout.write(
    `run ${o.runId} ${outcome.state} at step ${formatNumber(record.step)}; ${resumeHint}\n`,
  );
});
