/**
 * Shows where a run stands: live status from the workflow while it runs, its outcome once closed.
 *
 *   npm run status -- --run-id ID [--watch] [--json]
 */
import { Command } from 'commander';
import { describeSummary, type EvaluationSummary } from '../core/eval/settings';
import type { RunStatus } from '../workflows/api';
import { runCli } from '../common/errors';
import { runWorkerNeeds } from './run-control';
import { lastRunInput, requireRun, stateName } from './run-executions';
import {
  formatNumber,
  liveStatus,
  queryStatus,
  runOutcome,
  runRecord,
  completedRunLines,
  rankTimings,
  segmentHeartbeat,
  segmentHeartbeats,
} from './run-report';
import { objectUri, runIdOption } from './run-input';
import { openTemporalSession } from './temporal-session';
import { watchRun } from './watch-run';

const program = new Command('status')
  .description(
    "Show a run's state: phase, step, loss, images/s and its newest checkpoint and samples (queried from the " +
      'workflow while it runs; from its result and search attributes once it has ended).',
  )
  .requiredOption('--run-id <id>', 'the run (its workflow ID)', runIdOption)
  .option('--watch', 'then follow its progress until it ends (Ctrl-C stops watching, not the run)')
  .option('--json', 'print one JSON object instead of lines')
  .addHelpText('after', '\nExample:\n  npm run status -- --run-id cifar10-20250101-120000 --watch\n');

interface Options {
  runId: string;
  watch?: boolean;
  json?: boolean;
}

interface StatusReport {
  runId: string;
  state: string;
  phase: string | null;
  step: number | null;
  totalSteps: number | null;
  loss: number | null;
  imagesPerSec: number | null;
  checkpoint: string | null;
  samples: string | null;
  /** Latest evaluation (bits/dim, classifier score, FID), what is being evaluated now, and the plots page. */
  evaluation: EvaluationSummary | null;
  evaluating: number | null;
  evaluationNote: string | null;
  plots: string | null;
  note: string | null;
  /** Data-parallel runs: the ring of the last segment. */
  workers: string | null;
  /** Data-parallel runs: per-rank step timings of the running segment (stragglers show here). */
  ranks: string[];
  startedAt: string;
  closedAt: string | null;
  view: string;
}

function fromLiveStatus(
  s: RunStatus,
): Pick<
  StatusReport,
  | 'phase'
  | 'step'
  | 'totalSteps'
  | 'loss'
  | 'imagesPerSec'
  | 'checkpoint'
  | 'samples'
  | 'note'
  | 'workers'
  | 'evaluation'
  | 'evaluating'
  | 'evaluationNote'
  | 'plots'
> {
  return {
    evaluation: s.evaluation?.latest ?? null,
    evaluating: s.evaluation?.running ?? null,
    evaluationNote: s.evaluation?.note ?? null,
    plots: s.evaluation?.plots ? objectUri(s.storeUri, s.evaluation.plots) : null,
    phase: s.phase,
    step: s.step,
    totalSteps: s.totalSteps,
    loss: s.loss,
    imagesPerSec: s.imagesPerSec,
    checkpoint: s.lastCheckpointKey ? objectUri(s.storeUri, s.lastCheckpointKey) : null,
    samples: s.lastSampleKey ? objectUri(s.storeUri, s.lastSampleKey) : null,
    note: s.note,
    workers: s.workers?.world
      ? `${s.workers.world} (slots ${s.workers.slots.join(',')}; ${s.workers.attempts} segment attempts)`
      : null,
  };
}

function printLines(r: StatusReport): void {
  const rows: [string, string | null][] = [
    ['run', r.runId],
    ['state', r.state],
    ['phase', r.phase],
    ['step', r.step === null ? null : `${r.step}${r.totalSteps ? `/${r.totalSteps}` : ''}`],
    ['loss', r.loss === null ? null : formatNumber(r.loss)],
    ['img/s', r.imagesPerSec === null ? null : formatNumber(r.imagesPerSec, 3)],
    ['workers', r.workers],
    ...r.ranks.map((line): [string, string] => ['rank', line]),
    ['checkpoint', r.checkpoint],
    ['samples', r.samples],
    ['evaluation', r.evaluation ? `step ${r.evaluation.step}: ${describeSummary(r.evaluation)}` : null],
    ['evaluating', r.evaluating === null ? null : `step ${r.evaluating} (running now)`],
    ['eval note', r.evaluationNote],
    ['plots', r.plots],
    ['note', r.note],
    ['started', r.startedAt],
    ['closed', r.closedAt],
    ['view', r.view],
  ];
  for (const [k, v] of rows) if (v !== null) process.stdout.write(`${`${k}:`.padEnd(12)}${v}\n`);
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const { runId } = o;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const session = await openTemporalSession(log);
  const d = await requireRun(session.client, runId, session.namespace);
  const handle = session.client.workflow.getHandle(runId);
  const record = runRecord(d);
  const report: StatusReport = {
    runId,
    state: stateName(d),
    phase: record.phase,
    step: record.step,
    totalSteps: null,
    loss: record.loss,
    imagesPerSec: null,
    checkpoint: record.checkpoint,
    samples: record.samples,
    evaluation: record.evaluation,
    evaluating: null,
    evaluationNote: null,
    plots: record.plots,
    note: null,
    workers: null,
    ranks: rankTimings(segmentHeartbeats(d)),
    startedAt: d.startTime.toISOString(),
    closedAt: d.closeTime?.toISOString() ?? null,
    view: session.whereToSee(runId),
  };
  if (d.status.name === 'RUNNING') {
    const status = await queryStatus(session.client, handle);
    if (status) Object.assign(report, fromLiveStatus(liveStatus(status, segmentHeartbeat(d))));
    else report.note = 'no worker answered the status query; showing the last recorded state';
  } else {
    const outcome = await runOutcome(handle, d);
    report.totalSteps = await lastRunInput(session.client, runId).then(
      (input) => input.config.train.totalSteps,
      () => null,
    );
    if (outcome.state !== 'completed') report.note = outcome.message;
  }

  if (o.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else printLines(report);
  if (!o.watch || d.status.name !== 'RUNNING') return;

  const needs = await runWorkerNeeds(session, runId);
  const watched = await watchRun(session.client, runId, {
    log,
    keepWorker: () => session.ensureWorker(needs, { recheck: true }),
  });
  if (watched.state === 'detached') return;
  if (watched.state !== 'completed') throw new Error(`run ${runId} ${watched.state}: ${watched.message}`);
  for (const line of await completedRunLines(session.client, watched.result, record.store ?? ''))
    process.stdout.write(`${line}\n`);
});
