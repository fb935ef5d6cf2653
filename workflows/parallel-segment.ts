import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  TimeoutFailure,
  TimeoutType,
} from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import {
  ATTEMPT_ERRORS,
  NON_RETRYABLE_ERRORS,
  ParallelSettings,
  SegmentStopped,
  SlotNotAdmitted,
  TrainSegmentInput,
  TrainSegmentResult,
  slotTaskQueue,
} from './api';

/**
 * One data-parallel segment: a training activity on every slot's task queue, of which those that join
 * the attempt's rendezvous in time form the ring. If a member is lost the attempt is repeated from the last
 * checkpoint with the slots still alive plus any replacement that joins, never below `minWorkers`; the
 * global batch stays the same (each rank accumulates more micro-batches).
 */

export interface ParallelProgress {
  /** Segment attempts scheduled by this execution (the rendezvous key together with its run ID). */
  attempts: number;
  /** Slots that answered last time: the next rendezvous closes as soon as these have joined. */
  present: number[];
  /** World size and slots of the last attempt that formed a ring. */
  world: number | null;
  slots: number[];
  note: string | null;
}

export interface ParallelSegmentOptions {
  settings: ParallelSettings;
  segment: Omit<TrainSegmentInput, 'parallel'>;
  heartbeatSeconds: number;
  segmentHours: number;
  progress: ParallelProgress;
  /** Consecutive attempts that may fail before the run fails. */
  maxFailedAttempts?: number;
}

type Outcome = { slot: number } & ({ result: TrainSegmentResult | SlotNotAdmitted } | { error: unknown });

const DEFAULT_MAX_FAILED_ATTEMPTS = 20;

export function allSlots(settings: ParallelSettings): number[] {
  return Array.from({ length: settings.workers }, (_, k) => k);
}

export async function runParallelSegment(o: ParallelSegmentOptions): Promise<TrainSegmentResult> {
  const { settings, progress } = o;
  const slots = allSlots(settings);
  let failures = 0;
  for (;;) {
    progress.attempts++;
    const expected = progress.present.length >= settings.minWorkers ? progress.present : slots;
    const outcomes = await runAttempt(o, slots, [...expected]);
    const members = ringMembers(outcomes);
    const world = members[0]?.result.world ?? 0;
    const failed = outcomes.filter((x): x is Outcome & { error: unknown } => 'error' in x);
    // As many successes as the ring had members: every member finished; failures were of non-members
    // (refused, or never started because no trainer polls that slot).
    if (world > 0 && members.length === world) {
      progress.present = outcomes.flatMap((x) => ('result' in x ? [x.slot] : []));
      progress.world = world;
      progress.slots = members.map((m) => m.slot);
      progress.note = null;
      return {
        ...members[0].result,
        imagesPerSec: members.reduce((sum, m) => sum + m.result.imagesPerSec, 0),
      };
    }
    // Paused or cancelled: the members checkpointed what they completed (the writer says which step);
    // the caller decides what's next.
    if (wf.CancellationScope.current().consideredCancelled) {
      const stopped = failed.map((f) => segmentStopped(f.error)).find((s) => s !== undefined);
      throw new wf.CancelledFailure('segment cancelled', stopped ? [stopped] : []);
    }
    for (const f of failed) {
      const type = failureType(f.error);
      if (type && NON_RETRYABLE_ERRORS.includes(type)) throw f.error;
    }
    failures++;
    const reasons = failed.map((f) => `slot ${f.slot}: ${failureMessage(f.error)}`);
    if (failures >= (o.maxFailedAttempts ?? DEFAULT_MAX_FAILED_ATTEMPTS)) {
      throw ApplicationFailure.nonRetryable(
        `${failures} data-parallel attempts in a row failed; last: ${reasons.join('; ') || 'no slot joined'}`,
        'DataParallelAttemptsExhausted',
      );
    }
    progress.present = survivors(outcomes);
    progress.note = `attempt ${progress.attempts} failed (${reasons.join('; ')}); restarting from the last checkpoint with slots ${progress.present.join(',') || '(waiting for any)'}`;
    wf.log.warn(progress.note);
    // Back off a little: a replacement worker gets time to start and the log is not flooded.
    await wf.sleep(Math.min(30_000, 1000 * 2 ** Math.min(failures - 1, 5)));
  }
}

/** The slots that trained in the ring and finished, in rank order (rank 0, the checkpoint writer, first). */
function ringMembers(outcomes: Outcome[]): { slot: number; result: TrainSegmentResult }[] {
  return outcomes
    .flatMap((x) =>
      'result' in x && x.result.admitted !== false
        ? [{ slot: x.slot, result: x.result as TrainSegmentResult }]
        : [],
    )
    .sort((a, b) => (a.result.rank ?? 0) - (b.result.rank ?? 0));
}

async function runAttempt(
  o: ParallelSegmentOptions,
  slots: number[],
  expected: number[],
): Promise<Outcome[]> {
  const { settings } = o;
  const outcomes: Outcome[] = [];
  const scope = new wf.CancellationScope();
  const execution = wf.workflowInfo().runId;
  const pending = slots.map((slot) => {
    const { trainSegment } = wf.proxyActivities<typeof activities>({
      taskQueue: slotTaskQueue(settings.pool, slot),
      startToCloseTimeout: `${o.segmentHours}h`,
      heartbeatTimeout: `${o.heartbeatSeconds}s`,
      // The workflow repeats the whole attempt (every rank at once); a lone retried rank could not rejoin.
      retry: { maximumAttempts: 1 },
      cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    });
    return scope
      .run(() =>
        trainSegment({
          ...o.segment,
          parallel: {
            slot,
            execution,
            attempt: o.progress.attempts,
            expectedSlots: expected,
            minWorkers: settings.minWorkers,
            coordinator: settings.coordinator,
            rendezvousSeconds: settings.rendezvousSeconds,
            livenessSeconds: o.heartbeatSeconds,
            peerTimeoutSeconds: settings.peerTimeoutSeconds,
            wire: settings.wire,
          },
        }),
      )
      .then(
        (result) => void outcomes.push({ slot, result }),
        (error: unknown) => void outcomes.push({ slot, error }),
      );
  });
  // Waiting must outlive a pause's cancellation: members checkpoint before they acknowledge it.
  await wf.CancellationScope.nonCancellable(async () => {
    await wf.condition(() => attemptDecided(outcomes, slots.length));
    // Slots that never started (no worker polls them) or a failed attempt's remaining members.
    if (outcomes.length < slots.length) scope.cancel();
    await Promise.all(pending);
  });
  return outcomes;
}

/** Every slot answered, a member failed, or as many members succeeded as the ring had. */
function attemptDecided(outcomes: Outcome[], slotCount: number): boolean {
  if (outcomes.length === slotCount) return true;
  if (outcomes.some((x) => 'error' in x && !sitsOut(x.error))) return true;
  const members = ringMembers(outcomes);
  return members.length > 0 && members.length === members[0].result.world;
}

/** Slots expected next time: those that answered, minus the lost, refused and timed-out ones. */
function survivors(outcomes: Outcome[]): number[] {
  const blamed = new Set<number>();
  for (const x of outcomes) {
    if ('error' in x) for (const s of blamedSlots(x.error)) blamed.add(s);
  }
  return outcomes
    .filter((x) => {
      if (blamed.has(x.slot)) return false;
      if ('result' in x) return true;
      const type = failureType(x.error);
      // Members that lost a peer are alive; timed-out, refused and never-started slots are not counted on.
      return (
        type === ATTEMPT_ERRORS.peerLost ||
        type === ATTEMPT_ERRORS.peerTimeout ||
        type === ATTEMPT_ERRORS.notEnoughWorkers ||
        type === ATTEMPT_ERRORS.startStepMismatch
      );
    })
    .map((x) => x.slot)
    .sort((a, b) => a - b);
}

/** A slot whose credentials the coordinator refused sits the attempt out; the ring goes on without it. */
function sitsOut(err: unknown): boolean {
  return failureType(err) === ATTEMPT_ERRORS.refused;
}

function applicationCause(err: unknown): ApplicationFailure | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure ? cause : undefined;
}

/** Where a cancelled segment stopped, as its checkpoint writer reported it (none from older trainers). */
export function segmentStopped(err: unknown): SegmentStopped | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (!(cause instanceof CancelledFailure)) return undefined;
  const details = cause.details?.[0] as Partial<SegmentStopped> | undefined;
  return typeof details?.step === 'number' && typeof details.checkpointKey === 'string'
    ? { step: details.step, checkpointKey: details.checkpointKey }
    : undefined;
}

function failureType(err: unknown): string | undefined {
  return applicationCause(err)?.type ?? undefined;
}

function blamedSlots(err: unknown): number[] {
  const details = applicationCause(err)?.details?.[0] as { slots?: number[] } | undefined;
  return details?.slots ?? [];
}

function failureMessage(err: unknown): string {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof TimeoutFailure)
    return `timed out (${cause.timeoutType === TimeoutType.HEARTBEAT ? 'no heartbeat' : 'deadline'})`;
  if (wf.isCancellation(err)) return 'not started';
  return cause instanceof Error ? cause.message : String(cause);
}
