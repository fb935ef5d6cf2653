/**
 * How a failed activity is reported to Temporal, in one place: the core's typed errors that retrying
 * cannot fix become non-retryable failures of their own type (the run fails at once, with the cause in
 * its status); store outages become StoreUnavailableError, which the workflow waits out for as long as
 * they last; anything else stays retryable and spends the run's failure budget (workflows/training-run.ts).
 */
import { ApplicationFailure } from '@temporalio/common';
import {
  CheckpointMismatchError,
  DatasetError,
  InvalidInputError,
  MicroBatchOutOfMemoryError,
  NoValidCheckpointError,
  TrainingDivergedError,
} from '../core/errors';
import { STORE_UNAVAILABLE_ERROR } from '../workflows/api';

/** The same input fails the same way: these never go to another attempt (NON_RETRYABLE_ERROR_TYPES). */
export const PERMANENT_ERRORS = [
  InvalidInputError,
  DatasetError,
  CheckpointMismatchError,
  NoValidCheckpointError,
  TrainingDivergedError,
  MicroBatchOutOfMemoryError,
] as const;

/** Network failures that a restarted or reconnected store cures. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ECONNABORTED',
]);
const OUTAGE_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'SlowDown', 'ThrottlingException']);

/**
 * A store that is down, unreachable or overloaded (the S3 client already retried it for its deadline):
 * waiting cures it. Access denied, a missing bucket or missing credentials are not outages.
 */
export function isStoreOutage(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; depth++) {
    const x = e as { code?: unknown; name?: unknown; $metadata?: { httpStatusCode?: number } };
    if (typeof x.code === 'string' && NETWORK_CODES.has(x.code)) return true;
    if (typeof x.name === 'string' && OUTAGE_NAMES.has(x.name)) return true;
    const status = x.$metadata?.httpStatusCode;
    if (status !== undefined && (status >= 500 || status === 429)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The failure an activity throws for `err`: see the file comment. */
export function asActivityFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (PERMANENT_ERRORS.some((type) => err instanceof type)) {
    const e = err as Error;
    return ApplicationFailure.create({ type: e.name, message: e.message, nonRetryable: true });
  }
  if (isStoreOutage(err)) {
    const message = err instanceof Error ? err.message : String(err);
    return ApplicationFailure.create({
      type: STORE_UNAVAILABLE_ERROR,
      message: `store unavailable: ${message}`,
      nonRetryable: false,
    });
  }
  return err;
}
