import { existsSync } from 'node:fs';
import path from 'node:path';
import type { RunConfig } from '../core/presets';
import { UsageError } from './errors';

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

/** The first conventional dataset location that exists; otherwise an error listing where it looked. */
export function findDefaultDataset(config: RunConfig, env: NodeJS.ProcessEnv = process.env): string {
  const candidates = conventionalDatasetPaths(config, env);
  const found = candidates.find((p) => existsSync(p));
  if (found) return found;
  throw new UsageError(
    `no dataset for preset '${config.preset}' in ${candidates.join(', ')}: pass --dataset PATH or s3://bucket/key`,
  );
}
