/**
 * An AWS SDK v3 retry strategy (the RetryStrategyV2 interface) that retries for a span of time
 * rather than a number of attempts.
 *
 * Why not the SDK's standard strategy: it counts attempts (3 by default), so how long it rides out an
 * outage depends on jittered delays, and its client-wide retry quota (a token bucket) is drained by a
 * burst of parallel multipart-part failures, after which nothing is retried at all. A checkpoint save
 * must survive an S3 endpoint restarting for ~20 s, so the limit here is a deadline, with capped
 * exponential backoff and no quota. Being the SDK's strategy, it applies per request: each part of a
 * multipart upload retries on its own instead of the whole upload starting over.
 */

/** The error classes the SDK's retry middleware assigns before asking the strategy. */
type RetryErrorType = 'TRANSIENT' | 'THROTTLING' | 'SERVER_ERROR' | 'CLIENT_ERROR';

interface RetryErrorInfo {
  errorType: RetryErrorType;
  error?: unknown;
  retryAfterHint?: Date;
}

export interface DeadlineRetryOptions {
  /** Keep retrying until this long after the first attempt. Default 60 s (a 20 s outage, with margin). */
  retryForMs?: number;
  /** First backoff; doubles per retry up to maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class DeadlineRetryToken {
  constructor(
    readonly startedAt: number,
    private readonly retryCount: number,
    private readonly retryDelay: number,
  ) {}

  getRetryCount(): number {
    return this.retryCount;
  }

  getRetryDelay(): number {
    return this.retryDelay;
  }
}

// Network failures, timeouts, 500/502/503/504 (TRANSIENT) and SlowDown/429 (THROTTLING). Other 5xx such
// as 501 Not Implemented and all 4xx will not change by waiting.
const RETRYABLE: ReadonlySet<RetryErrorType> = new Set(['TRANSIENT', 'THROTTLING']);

export class DeadlineRetryStrategy {
  readonly retryForMs: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(options: DeadlineRetryOptions = {}) {
    this.retryForMs = options.retryForMs ?? 60_000;
    this.baseDelayMs = options.baseDelayMs ?? 100;
    this.maxDelayMs = options.maxDelayMs ?? 2_000;
  }

  async acquireInitialRetryToken(_retryTokenScope: string): Promise<DeadlineRetryToken> {
    return new DeadlineRetryToken(Date.now(), 0, 0);
  }

  async refreshRetryTokenForRetry(
    token: DeadlineRetryToken,
    errorInfo: RetryErrorInfo,
  ): Promise<DeadlineRetryToken> {
    // Throwing tells the middleware to give up; it then rethrows the request's own error.
    if (!RETRYABLE.has(errorInfo.errorType)) throw new Error(`not retryable: ${errorInfo.errorType}`);
    const retries = token.getRetryCount();
    const backoff = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** retries);
    // Half-jitter: spread out many clients (or parts) retrying together, but never wait ~0.
    let delay = backoff / 2 + Math.random() * (backoff / 2);
    const hintMs = errorInfo.retryAfterHint ? errorInfo.retryAfterHint.getTime() - Date.now() : 0;
    delay = Math.max(delay, Math.min(hintMs, this.maxDelayMs * 5));
    const elapsed = Date.now() - token.startedAt;
    if (elapsed + delay > this.retryForMs) throw new Error(`gave up retrying after ${elapsed} ms`);
    return new DeadlineRetryToken(token.startedAt, retries + 1, Math.round(delay));
  }

  recordSuccess(_token: DeadlineRetryToken): void {
    // No quota to refill.
  }
}
