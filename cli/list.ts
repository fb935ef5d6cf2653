/**
 * Lists training runs with their preset, phase, step and loss (from Temporal's visibility store).
 *
 *   npm run list -- [--limit N] [--query 'DdpmPreset = "cifar10"'] [--json]
 */
import { Command } from 'commander';
import { WORKFLOW_TYPE } from '../workflows/api';
import { runCli } from '../common/errors';
import { positiveInt } from '../common/options';
import { formatNumber, runRecord } from './run-report';
import { openTemporalSession } from './temporal-session';

const program = new Command('list')
  .description(
    'List training runs, newest first: state, phase (DdpmStatus), preset (DdpmPreset), step (DdpmStep) and loss ' +
      '(DdpmLoss), as the runs last published them.',
  )
  .option('--limit <n>', 'at most this many runs', positiveInt, 20)
  .option(
    '--query <filter>',
    'extra Temporal visibility filter, e.g. \'DdpmPreset = "cifar10"\' or \'ExecutionStatus = "Running"\'',
  )
  .option('--json', 'print one JSON object per run instead of a table')
  .addHelpText('after', '\nExample:\n  npm run list -- --query \'DdpmStatus = "training"\'\n');

interface Row {
  runId: string;
  state: string;
  phase: string | null;
  preset: string | null;
  step: number | null;
  loss: number | null;
  startedAt: string;
}

function table(rows: Row[]): string {
  const header = ['RUN ID', 'STATE', 'PHASE', 'PRESET', 'STEP', 'LOSS', 'STARTED'];
  const cells = rows.map((r) => [
    r.runId,
    r.state,
    r.phase ?? '-',
    r.preset ?? '-',
    r.step === null ? '-' : String(r.step),
    formatNumber(r.loss),
    r.startedAt.replace(/\.\d+Z$/, 'Z'),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  return [header, ...cells]
    .map((row) =>
      row
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

runCli(async () => {
  const o = program.parse().opts<{ limit: number; query?: string; json?: boolean }>();
  const session = await openTemporalSession((line) => process.stderr.write(`${line}\n`));
  // A run that continued as new leaves closed executions behind; a restarted one, its earlier failure.
  let query = `WorkflowType = '${WORKFLOW_TYPE}' AND ExecutionStatus != 'ContinuedAsNew'`;
  if (o.query) query += ` AND (${o.query})`;
  const rows: Row[] = [];
  const seen = new Set<string>();
  for await (const info of session.client.workflow.list({ query })) {
    if (seen.has(info.workflowId)) continue;
    seen.add(info.workflowId);
    const record = runRecord(info);
    rows.push({
      runId: info.workflowId,
      state: info.status.name.toLowerCase(),
      phase: record.phase,
      preset: record.preset,
      step: record.step,
      loss: record.loss,
      startedAt: info.startTime.toISOString(),
    });
    if (rows.length >= o.limit) break;
  }
  if (o.json) for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
  else process.stdout.write(rows.length ? `${table(rows)}\n` : 'no runs\n');
});
