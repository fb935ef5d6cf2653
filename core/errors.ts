/**
 * Bad input that no retry can fix (a mask of the wrong size, a checkpoint that does not exist, a sampler
 * asked for more steps than the schedule has). Activities turn it into a non-retryable failure of the
 * same name (see activities/runtime.ts); the CLI prints its message as one line.
 */
export class InvalidInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInputError';
  }
}
