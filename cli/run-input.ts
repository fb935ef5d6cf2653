import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { isEmbeddedSource } from '../core/data/embedded-digits';
import { RunIdSchema, TrainingRunInputSchema, type TrainingRunInput } from '../core/run-input';
import { isS3Uri } from '../store';

/** Validates a run input; the error names the first offending field, e.g. `schedule.checkpointEvery`. */
export function parseRunInput(value: unknown): TrainingRunInput {
  const parsed = TrainingRunInputSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid run input: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

/** A store option as the payload needs it: URIs untouched, local paths made absolute. */
export function absoluteStoreUri(store: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(store)) return store;
  return path.resolve(store);
}

/**
 * A dataset source as workers need it (they run elsewhere: another cwd, another machine with the same
 * mounts): S3 URIs and the embedded digits untouched, local paths made absolute.
 */
export function absoluteDatasetSource(source: string): string {
  return isS3Uri(source) || isEmbeddedSource(source) ? source : path.resolve(source);
}

/** Joins a store URI and an object key for display (`/abs/runs` + `run/latest`). */
export function objectUri(storeUri: string, key: string): string {
  return `${storeUri.replace(/\/+$/, '')}/${key}`;
}

/** commander parser for --run-id: the same rule as the workflow input, reported against the option. */
export function runIdOption(value: string): string {
  const parsed = RunIdSchema.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0].message);
  return parsed.data;
}
