import { existsSync } from 'node:fs';
import path from 'node:path';
import { EMBEDDED_DIGITS } from '../core/data';
import type { RunConfig } from '../core/presets';
import {
  datasetCacheDir,
  downloadableDatasetFor,
  ensureDownloaded,
  isDownloadComplete,
} from './dataset-download';
import { UsageError } from '../common/errors';

/**
 * The dataset a preset trains on when none is given and none is found on disk: the digits preset's
 * shipped images. Presets missing here need a copy on disk, a download (cifar10, mnist), or --dataset.
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
 * conventional location that holds a copy, else (cifar10, mnist) a verified download into the cache;
 * otherwise an error listing where it looked. A conventional location that is also the download's place
 * in the cache counts only when the download there is complete and verified, so an interrupted download
 * is finished rather than trained on.
 */
export async function findDefaultDataset(
  config: RunConfig,
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Promise<string> {
  const embedded = EMBEDDED_DEFAULTS[config.preset];
  if (embedded) return embedded;
  const download = downloadableDatasetFor(config.preset, env);
  const cacheDir = datasetCacheDir(env);
  const cached = download && path.join(cacheDir, download.target);
  const candidates = conventionalDatasetPaths(config, env, cwd);
  for (const candidate of candidates) {
    if (candidate !== cached) {
      if (existsSync(candidate)) return candidate;
    } else if (download && (await isDownloadComplete(download, cacheDir))) {
      return candidate;
    }
  }
  if (download) return ensureDownloaded(download, cacheDir);
  throw new UsageError(
    `no dataset for preset '${config.preset}' in ${candidates.join(', ')}: pass --dataset PATH or s3://bucket/key`,
  );
}
