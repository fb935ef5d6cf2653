/**
 * Resumes a paused run, or starts a failed / cancelled / terminated one again from its newest checkpoint.
 *
 *   npm run resume -- --run-id ID [--watch]
 */
import { Command } from 'commander';
import { resumeSignal } from '../workflows/api';
import { runCli } from '../common/errors';
import {
  requireRun,
  lastRunInput,
  startRunExecution,
  stateName,
  withStoreResumePoint,
} from './run-executions';
import { runIdOption } from './run-input';
import { queryStatus, completedRunLines } from './run-report';
import { openTemporalSession, workerNeedsOf } from './temporal-session';
import { watchRun } from './watch-run';

const program = new Command('resume')
  .description(
    'Resume a run: a paused one continues; one that failed, was cancelled or terminated starts again with the ' +
      'input of its last execution and picks up from its newest checkpoint in the store.',
  )
  .requiredOption('--run-id <id>', 'the run (its workflow ID)', runIdOption)
  .option('--watch', 'then follow its progress (Ctrl-C stops watching, not the run)')
  .addHelpText('after', '\nExample:\n  npm run resume -- --run-id cifar10-20250101-120000 --watch\n');

runCli(async () => {
  const o = program.parse().opts<{ runId: string; watch?: boolean }>();
  const { runId } = o;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const session = await openTemporalSession(log);
  const d = await requireRun(session.client, runId, session.namespace);
  const state = stateName(d);
  if (state === 'completed') {
    say(`run ${runId} has already completed; nothing to resume`);
    return;
  }
  const input = await lastRunInput(session.client, runId);
  const needs = workerNeedsOf(input);
  await session.ensureWorker(needs);
  const handle = session.client.workflow.getHandle(runId);
  if (state === 'running') {
    const status = await queryStatus(session.client, handle);
    if (status && status.phase !== 'paused') {
      say(`run ${runId} is not paused (it is ${status.phase}, step ${status.step}); nothing to resume`);
    } else {
      await handle.signal(resumeSignal);
      say(`resumed run ${runId}${status ? ` at step ${status.step}` : ''}`);
    }
  } else {
    log(`run ${runId} ended ${state}; starting it again with its last input`);
    const started = await startRunExecution(session.client, await withStoreResumePoint(input, log));
    say(started === 'started' ? `restarted run ${runId}` : `run ${runId} was just started elsewhere`);
  }
  say(`view: ${session.whereToSee(runId)}`);
  if (!o.watch) return;
  const watched = await watchRun(session.client, runId, {
    log,
    keepWorker: () => session.ensureWorker(needs, { recheck: true }),
  });
  if (watched.state === 'detached') return;
  if (watched.state !== 'completed') throw new Error(`run ${runId} ${watched.state}: ${watched.message}`);
  for (const line of await completedRunLines(session.client, watched.result, input.storeUri)) say(line);
});
