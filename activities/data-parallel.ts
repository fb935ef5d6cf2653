import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { CoordinatorError, CoordinatorErrorKind, Group, JoinResult } from '../coordinator/api';
import { joinGroup } from '../coordinator/client';
import type { GradientReducer } from '../core/train/trainer';
import { ATTEMPT_ERRORS, SegmentHeartbeat, SlotAssignment } from '../workflows/api';
import { allReduceFaultHook } from './fault-injection';
import { withHeartbeats } from './runtime';

/**
 * The data-parallel side of a training segment: joining the attempt's group through the coordinator, the
 * gradient reducer over its ring, and mapping coordinator failures onto the error types the workflow
 * turns into a restarted attempt.
 */

/** The cluster key trainers and the coordinator share; each run's secret is derived from it. */
export function clusterKey(): string {
  const key = process.env.DDPM_COORDINATOR_KEY;
  if (!key) {
    throw ApplicationFailure.retryable(
      'this trainer has no DDPM_COORDINATOR_KEY in its environment, so it cannot join data-parallel runs',
      ATTEMPT_ERRORS.refused,
    );
  }
  return key;
}

export async function joinSlotGroup(
  p: SlotAssignment,
  runId: string,
  startStep: number,
  beat: SegmentHeartbeat,
): Promise<JoinResult> {
  const ctx = Context.current();
  beat.phase = 'joining';
  beat.slot = p.slot;
  ctx.heartbeat(beat);
  try {
    return await withHeartbeats(
      joinGroup({
        address: p.coordinator,
        clusterKey: clusterKey(),
        runId,
        execution: p.execution,
        attempt: p.attempt,
        slot: p.slot,
        expectedSlots: p.expectedSlots,
        minWorkers: p.minWorkers,
        rendezvousSeconds: p.rendezvousSeconds,
        startStep,
        livenessSeconds: p.livenessSeconds,
        peerTimeoutSeconds: p.peerTimeoutSeconds,
        dataHost: process.env.DDPM_DATA_HOST || '127.0.0.1',
        wire: p.wire,
        signal: ctx.cancellationSignal,
        log: (line) => ctx.log.info(line),
      }),
      () => beat,
    );
  } catch (err) {
    // Cancelled before the ring formed: the attempt went on without this slot. Answering (instead of
    // failing) tells the workflow this trainer is alive, so the next attempt waits for it.
    if (ctx.cancellationSignal.aborted) return { admitted: false, reason: 'cancelled before it could join' };
    throw asAttemptFailure(err);
  }
}

/**
 * Reduces over the group's ring and records where the step's time went in the heartbeat, so a straggler
 * shows up per rank in the Temporal UI. Waiting for peers keeps heartbeating: a slow peer is not this
 * trainer's death.
 */
export function groupReducer(
  group: Group,
  beat: SegmentHeartbeat,
  currentStep: () => number,
  stepStartedAt: () => number,
): GradientReducer {
  return async (local) => {
    const step = currentStep();
    const computeSeconds = (performance.now() - stepStartedAt()) / 1000;
    const reduced = await withHeartbeats(
      group.allReduce(local, { step, computeSeconds, afterFirstSend: allReduceFaultHook(step) }),
      () => beat,
    );
    const t = group.lastTimings;
    Object.assign(beat, {
      computeSeconds,
      allReduceSeconds: t?.seconds,
      waitSeconds: t?.waitSeconds,
    });
    return reduced;
  };
}

const TYPE_OF_KIND: Record<CoordinatorErrorKind, string> = {
  refused: ATTEMPT_ERRORS.refused,
  unreachable: ATTEMPT_ERRORS.unreachable,
  'not-enough-workers': ATTEMPT_ERRORS.notEnoughWorkers,
  'start-step-mismatch': ATTEMPT_ERRORS.startStepMismatch,
  'peer-lost': ATTEMPT_ERRORS.peerLost,
  'peer-timeout': ATTEMPT_ERRORS.peerTimeout,
  'coordinator-lost': ATTEMPT_ERRORS.coordinatorLost,
};

/** Coordinator failures become typed activity failures whose details name the slots to blame. */
export function asAttemptFailure(err: unknown): unknown {
  if (!(err instanceof CoordinatorError)) return err;
  return ApplicationFailure.create({
    message: err.message,
    type: TYPE_OF_KIND[err.kind],
    details: [{ slots: err.slots }],
  });
}
