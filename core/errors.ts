/**
 * The errors that decide what happens after a failure. Core code throws these types (never a message
 * for someone to match), and the activities map each type to "retry" or "fail the run" in one place
 * (activities/failures.ts). Every class sets its `name`, which becomes the Temporal failure type.
 *
 * Free of Node APIs: the workflow imports NON_RETRYABLE_ERROR_TYPES from here.
 */

/** Messages stay one line, so a CLI error or a log entry is never split or forged by what it quotes. */
const oneLine = (text: string) => text.replace(/\s*[\r\n]+\s*/g, ' ');

/** Input that can never work as given: a bad option, a dataset that does not fit the preset's model. */
export class InvalidInputError extends Error {
  override readonly name = 'InvalidInputError';

  constructor(message: string) {
    super(oneLine(message));
  }
}

/**
 * A dataset that cannot be read. The message is always one line, "<file>: <problem>", so that a CLI
 * error or a log entry points straight at the offending file without a stack trace.
 */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';

  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(oneLine(`${file}: ${problem}`));
  }
}

/** A checkpoint that fails verification (missing, corrupt, malformed): readers skip it for an older one. */
export class CheckpointError extends Error {
  override readonly name: string = 'CheckpointError';

  constructor(message: string) {
    super(oneLine(message));
  }
}

/**
 * A valid checkpoint of another model or diffusion process: resuming from it (or silently from an older
 * one) would train the wrong thing, so it is not skipped like corruption.
 */
export class CheckpointMismatchError extends CheckpointError {
  override readonly name = 'CheckpointMismatchError';
}

/** A run that has checkpoints of which none verifies: starting over silently would lose the run. */
export class NoValidCheckpointError extends CheckpointError {
  override readonly name = 'NoValidCheckpointError';

  constructor(
    where: string,
    readonly skipped: { step: number; reason: string }[],
  ) {
    super(
      `${where} has ${skipped.length} checkpoint(s) and none is valid: ` +
        skipped.map((s) => `step ${s.step}: ${s.reason}`).join('; '),
    );
  }
}

/** The loss stopped being finite: the same step from the same state diverges again, so it is not retried. */
export class TrainingDivergedError extends Error {
  override readonly name = 'TrainingDivergedError';

  constructor(
    readonly step: number,
    readonly loss: number,
  ) {
    super(`loss is ${loss} at step ${step}; stopping before the update`);
  }
}

/** The backend could not allocate memory for an operation (its message carries the backend's own words). */
export class BackendOutOfMemoryError extends Error {
  override readonly name = 'BackendOutOfMemoryError';

  constructor(message: string) {
    super(oneLine(message));
  }
}

/**
 * A micro-batch that does not fit in the backend's memory. Retrying the same size fails the same way;
 * the message names the --micro-batch to try instead.
 */
export class MicroBatchOutOfMemoryError extends Error {
  override readonly name = 'MicroBatchOutOfMemoryError';

  constructor(
    readonly microBatchSize: number,
    readonly backend: string,
    cause: string,
  ) {
    const half = Math.floor(microBatchSize / 2);
    super(
      oneLine(
        half >= 1
          ? `a micro-batch of ${microBatchSize} images does not fit in the ${backend} backend's memory ` +
              `(${cause}); try --micro-batch ${half} (the global batch stays the same)`
          : `even a micro-batch of 1 image does not fit in the ${backend} backend's memory (${cause}); ` +
              'use a smaller model or a backend with more memory',
      ),
    );
  }
}

/**
 * Failure types the workflow never retries: the same input would fail the same way. Activities raise
 * them as non-retryable ApplicationFailures of these types (activities/failures.ts).
 */
export const NON_RETRYABLE_ERROR_TYPES = [
  'InvalidInputError',
  'DatasetError',
  'CheckpointMismatchError',
  'NoValidCheckpointError',
  'TrainingDivergedError',
  'MicroBatchOutOfMemoryError',
] as const;
