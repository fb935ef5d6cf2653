import {
  Client,
  WorkflowExecutionDescription,
  WorkflowHandle,
  defaultPayloadConverter,
} from '@temporalio/client';
import {
  RunStatus,
  SEARCH_ATTRIBUTES,
  SegmentHeartbeat,
  TrainingRunResult,
  statusQuery,
} from '../workflows/api';
import { describeSummary, type EvaluationSummary } from '../core/eval/settings';
import { objectUri } from './run-input';

/** What a closed run came to: its result, or why it ended otherwise. */
export type RunOutcome =
  | { state: 'completed'; result: TrainingRunResult }
  | { state: 'failed' | 'cancelled' | 'terminated' | 'timed_out'; message: string };

export async function runOutcome(
  handle: WorkflowHandle,
  d: WorkflowExecutionDescription,
): Promise<RunOutcome> {
  if (d.status.name === 'COMPLETED')
    return { state: 'completed', result: (await handle.result()) as TrainingRunResult };
  const state = d.status.name.toLowerCase() as Exclude<RunOutcome['state'], 'completed'>;
  try {
    await handle.result();
    return { state, message: state };
  } catch (err) {
    return { state, message: innermostMessage(err) };
  }
}

/** Temporal wraps the useful message (e.g. the activity's error) in a chain of causes. */
export function innermostMessage(err: unknown): string {
  let message = err instanceof Error ? err.message : String(err);
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) {
    e = e.cause;
    if ((e as Error).message) message = (e as Error).message;
  }
  return message;
}

/** The run's live status from the workflow, or null when no worker answers within the deadline. */
export async function queryStatus(
  client: Client,
  handle: WorkflowHandle,
  // A trainer's worker answers queries between micro-batches, which take seconds on a CPU.
  timeoutMs = 15_000,
): Promise<RunStatus | null> {
  try {
    return await client.connection.withDeadline(Date.now() + timeoutMs, () => handle.query(statusQuery));
  } catch {
    return null;
  }
}

/**
 * The training segment's latest heartbeat: the workflow's status advances only at segment ends, the
 * heartbeat after every step.
 */
export function segmentHeartbeat(d: WorkflowExecutionDescription): SegmentHeartbeat | null {
  return segmentHeartbeats(d)[0] ?? null;
}

/** Every running trainSegment's latest heartbeat: one per rank in a data-parallel segment. */
export function segmentHeartbeats(d: WorkflowExecutionDescription): SegmentHeartbeat[] {
  const beats: SegmentHeartbeat[] = [];
  for (const activity of d.raw.pendingActivities ?? []) {
    if (activity.activityType?.name !== 'trainSegment') continue;
    const payload = activity.heartbeatDetails?.payloads?.[0];
    if (payload) beats.push(defaultPayloadConverter.fromPayload<SegmentHeartbeat>(payload));
  }
  return beats;
}

/**
 * Where each rank's step time goes, from the heartbeats: a straggler computes longest while the others
 * wait for it in the all-reduce.
 */
export function rankTimings(beats: SegmentHeartbeat[]): string[] {
  return beats
    .filter((b) => b.rank !== undefined && b.computeSeconds !== undefined)
    .sort((a, b) => (a.rank ?? 0) - (b.rank ?? 0))
    .map(
      (b) =>
        `rank ${b.rank} (slot ${b.slot}): step ${b.step}, compute ${b.computeSeconds?.toFixed(2)} s, ` +
        `all-reduce ${b.allReduceSeconds?.toFixed(2) ?? '?'} s (waiting ${b.waitSeconds?.toFixed(2) ?? '?'} s)`,
    );
}

/** Status merged with the heartbeat, so step, loss and img/s are current mid-segment. */
export function liveStatus(
  status: RunStatus,
  beat: SegmentHeartbeat | null,
): RunStatus & { activity: string | null } {
  if (!beat || status.phase !== 'training' || beat.step < status.step) return { ...status, activity: null };
  return {
    ...status,
    step: beat.step,
    loss: beat.loss ?? status.loss,
    imagesPerSec: beat.imagesPerSec ?? status.imagesPerSec,
    activity: beat.phase,
  };
}

/** What the search attributes and memo record of a run (kept after it closes; URIs are complete). */
export interface RunRecord {
  preset: string | null;
  phase: string | null;
  step: number | null;
  loss: number | null;
  store: string | null;
  checkpoint: string | null;
  samples: string | null;
  /** The latest in-run evaluation, and the plots page (URI). */
  evaluation: EvaluationSummary | null;
  plots: string | null;
}

export function runRecord(
  d: Pick<WorkflowExecutionDescription, 'typedSearchAttributes' | 'memo'>,
): RunRecord {
  const sa = d.typedSearchAttributes;
  const memo = (d.memo ?? {}) as {
    store?: string;
    checkpoint?: string | null;
    samples?: string | null;
    evaluation?: EvaluationSummary | null;
    plots?: string | null;
  };
  return {
    preset: sa.get(SEARCH_ATTRIBUTES.preset) ?? null,
    phase: sa.get(SEARCH_ATTRIBUTES.status) ?? null,
    step: sa.get(SEARCH_ATTRIBUTES.step) ?? null,
    loss: sa.get(SEARCH_ATTRIBUTES.loss) ?? null,
    store: memo.store ?? null,
    checkpoint: memo.checkpoint ?? null,
    samples: memo.samples ?? null,
    evaluation: memo.evaluation ?? null,
    plots: memo.plots ?? null,
  };
}

/** What a completed run reports: its result, then its latest evaluation and plots page (from its memo). */
export async function completedRunLines(
  client: Client,
  result: TrainingRunResult,
  storeUri: string,
): Promise<string[]> {
  const record = runRecord(await client.workflow.getHandle(result.runId).describe());
  const lines = [
    `run ${result.runId} completed: step ${result.finalStep}, loss ${formatNumber(result.loss)}`,
  ];
  if (result.checkpointKey) lines.push(`checkpoint: ${objectUri(storeUri, result.checkpointKey)}`);
  if (result.sampleKey) lines.push(`samples:    ${objectUri(storeUri, result.sampleKey)}`);
  const e = record.evaluation;
  if (e) lines.push(`evaluation: step ${e.step}: ${describeSummary(e)}`);
  if (record.plots) lines.push(`plots:      ${record.plots}`);
  return lines;
}

export function formatNumber(x: number | null | undefined, digits = 4): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : String(Number(x.toPrecision(digits)));
}
