/**
 * What a run does when an activity has failed for good (after its own retries): fail now, wait, or try
 * again while its failure budget lasts. Deterministic workflow code: the decision depends only on the
 * failure Temporal recorded in the history.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  TimeoutFailure,
  TimeoutType,
} from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import { NON_RETRYABLE_ERRORS, STORE_UNAVAILABLE_ERROR } from './api';

export interface FailurePolicy {
  /** Failures in a row (each after the activity's own attempts) that the run survives. */
  budget: number;
  /** Attempts per activity, for messages. */
  attemptsPerActivity: number;
  /** Pause after the first budget-spending failure; it doubles after each further one. */
  firstPauseSeconds: number;
  /** Longest pause between waits for a lost trainer or an unavailable store. */
  maxPatiencePauseSeconds: number;
}

/**
 * permanent: the same input fails the same way (a typed core error, or a decision the workflow made);
 * patient: the infrastructure, not the run, failed (a lost trainer, a store outage): wait, spend nothing;
 * budget: anything else (a bug, an unreadable store, a corrupt object): retry while the budget lasts.
 */
export type FailureKind = 'permanent' | 'patient' | 'budget';

export function classifyFailure(err: unknown): { kind: FailureKind; reason: string } {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof TimeoutFailure) {
    return cause.timeoutType === TimeoutType.HEARTBEAT
      ? { kind: 'patient', reason: 'the trainer stopped heartbeating (lost)' }
      : { kind: 'budget', reason: `timed out (${cause.message || 'deadline'})` };
  }
  // An activity cancelled without the workflow asking: its worker shut down under it.
  if (cause instanceof CancelledFailure) return { kind: 'patient', reason: 'its worker shut down' };
  if (cause instanceof ApplicationFailure) {
    if (cause.type === STORE_UNAVAILABLE_ERROR) return { kind: 'patient', reason: cause.message };
    if (cause.nonRetryable || (cause.type && NON_RETRYABLE_ERRORS.includes(cause.type))) {
      return { kind: 'permanent', reason: cause.message };
    }
  }
  return { kind: 'budget', reason: innermostMessage(err) };
}

/** Temporal wraps the useful message (the activity's own error) in a chain of causes. */
export function innermostMessage(err: unknown): string {
  let message = err instanceof Error ? err.message : String(err);
  for (let e: unknown = err; e instanceof Error && e.cause instanceof Error;) {
    e = e.cause;
    if ((e as Error).message) message = (e as Error).message;
  }
  return message;
}

export class FailureBudget {
  private failures = 0;
  private waits = 0;

  constructor(
    private readonly policy: FailurePolicy,
    /** Shown in the run's status while it retries or waits; null once something succeeds again. */
    private readonly note: (line: string | null) => void,
  ) {}

  /**
   * Runs `call` (an activity, or a data-parallel segment) until it succeeds, the failure is permanent,
   * or the budget is spent; a success refills the budget. Cancellation (pause, cancel) passes through.
   */
  async run<T>(what: string, call: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        const result = await call();
        if (this.failures > 0 || this.waits > 0) this.note(null);
        this.failures = 0;
        this.waits = 0;
        return result;
      } catch (err) {
        if (wf.isCancellation(err) && wf.CancellationScope.current().consideredCancelled) throw err;
        // Runs whose history predates the budget failed here: replaying them must do the same.
        if (!wf.patched('failure-budget')) throw err;
        const { kind, reason } = classifyFailure(err);
        if (kind === 'permanent') throw err;
        let pauseSeconds: number;
        if (kind === 'patient') {
          this.waits++;
          pauseSeconds = Math.min(this.policy.maxPatiencePauseSeconds, 2 ** Math.min(this.waits, 16));
          this.note(
            `${what}: ${reason}; trying again in ${pauseSeconds} s (waiting ${this.waits} times so far)`,
          );
        } else {
          this.failures++;
          const { budget, attemptsPerActivity } = this.policy;
          if (this.failures >= budget) {
            throw ApplicationFailure.nonRetryable(
              `${what} failed ${this.failures} times in a row (${attemptsPerActivity} attempts each), ` +
                `so the run stopped: ${reason}`,
              'FailureBudgetExhausted',
            );
          }
          pauseSeconds = this.policy.firstPauseSeconds * 2 ** (this.failures - 1);
          this.note(`${what} failed (${reason}); try ${this.failures + 1} of ${budget} in ${pauseSeconds} s`);
        }
        wf.log.warn(`${what}: ${kind} failure: ${reason}`);
        await wf.sleep(pauseSeconds * 1000);
      }
    }
  }
}
