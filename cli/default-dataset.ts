import { existsSync } from 'node:fs';
import path from 'node:path';
import { EMBEDDED_DIGITS } from '../core/data';
import type { RunConfig } from '../core/presets';
import { UsageError } from './errors';

/**
 * The dataset a preset trains on when none is given and none is found on disk: the digits preset's
 * shipped images. Presets missing here need a copy on disk (or --dataset).
 */
const EMBEDDED_DEFAULTS: Record<string, string> = { digits: EMBEDDED_DIGITS };

/** Where a dataset usually lives, for a preset's kind of images (grayscale: MNIST, colour: CIFAR-10). */
export function conventionalDatasetPaths(
  config: RunConfig,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): string[] {
  const names =
    config.model.inChannels === 1 ? ['mnist'] : ['cifar-10-batches-bin', 'cifar-10-binary.tar.gz'];
  const dirs = [env.DDPM_DATA_DIR, path.join(cwd, 'data'), path.join(cwd, '..', 'shared', 'data')];
  return dirs.filter((d): d is string => Boolean(d)).flatMap((d) => names.map((n) => path.resolve(d, n)));
}

/**
 * The dataset a run uses when --dataset is not given: the preset's embedded one, else the first
 * conventional location that exists; otherwise an error listing where it looked.
 */
export function findDefaultDataset(config: RunConfig, env: NodeJS.ProcessEnv = process.env): string {
  const embedded = EMBEDDED_DEFAULTS[config.preset];
  if (embedded) return embedded;
  const candidates = conventionalDatasetPaths(config, env);
  const found = candidates.find((p) => existsSync(p));
  if (found) return found;
  throw new UsageError(
    `no dataset for preset '${config.preset}' in ${candidates.join(', ')}: pass --dataset PATH or s3://bucket/key`,
  );
}
