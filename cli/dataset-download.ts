import path from 'node:path';
import { defaultCacheRoot } from '../infra/cache-root';
import { DownloadError, downloadFile, isVerifiedCopy } from './download-file';
import { UsageError } from '../common/errors';

/** The official CIFAR-10 binary archive and its md5 from https://www.cs.toronto.edu/~kriz/cifar.html. */
export const CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const CIFAR10_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';

/**
 * MNIST's IDX files on the mirror torchvision uses (yann.lecun.com often refuses downloads), with the
 * md5s torchvision checks them against.
 */
export const MNIST_BASE_URL = 'https://ossci-datasets.s3.amazonaws.com/mnist/';
export const MNIST_MD5S: Readonly<Record<string, string>> = {
  'train-images-idx3-ubyte.gz': 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
  'train-labels-idx1-ubyte.gz': 'd53e105ee54ea40749a09fcbcd1e9432',
  't10k-images-idx3-ubyte.gz': '9fb629c4189551a2d022fa330f9573f3',
  't10k-labels-idx1-ubyte.gz': 'ec29112dd5afa0611ce80d1b7f02629c',
};

export interface RemoteFile {
  url: string;
  md5: string;
  /** Path under the cache directory. */
  name: string;
}

/** A dataset the CLI can fetch: its files, and the path (under the cache) that --dataset would name. */
export interface DownloadableDataset {
  title: string;
  /** File or directory under the cache directory that the dataset layer reads. */
  target: string;
  files: RemoteFile[];
  /** The environment variable that points the download at a mirror. */
  urlVariable: string;
}

/**
 * Where downloads go: $DDPM_DATA_DIR (which is also the first place looked in for a local copy), else the
 * per-user cache ($XDG_CACHE_HOME or ~/.cache)/ddpm-temporal/datasets.
 */
export function datasetCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DDPM_DATA_DIR) return path.resolve(env.DDPM_DATA_DIR);
  return path.join(defaultCacheRoot(env), 'datasets');
}

function urlFrom(env: NodeJS.ProcessEnv, variable: string, fallback: string): string {
  const value = env[variable] || fallback;
  try {
    return new URL(value).href;
  } catch {
    throw new UsageError(`${variable}=${value} is not a URL`);
  }
}

function md5From(value: string, variable: string): string {
  if (!/^[0-9a-f]{32}$/i.test(value))
    throw new UsageError(`${variable}: '${value}' is not an md5 (32 hex digits)`);
  return value.toLowerCase();
}

/** DDPM_MNIST_MD5S="name=md5,name=md5": expected md5s for a mirror whose files differ from the official ones. */
function mnistMd5Overrides(env: NodeJS.ProcessEnv): Record<string, string> {
  const overrides: Record<string, string> = {};
  for (const entry of (env.DDPM_MNIST_MD5S ?? '').split(',').filter((e) => e.trim() !== '')) {
    const [name, md5] = entry.split('=').map((s) => s.trim());
    if (!(name in MNIST_MD5S) || md5 === undefined) {
      throw new UsageError(
        `DDPM_MNIST_MD5S: '${entry}' is not <file>=<md5> for one of ${Object.keys(MNIST_MD5S).join(', ')}`,
      );
    }
    overrides[name] = md5From(md5, 'DDPM_MNIST_MD5S');
  }
  return overrides;
}

function cifar10(env: NodeJS.ProcessEnv): DownloadableDataset {
  return {
    title: 'CIFAR-10',
    target: 'cifar-10-binary.tar.gz',
    files: [
      {
        url: urlFrom(env, 'DDPM_CIFAR10_URL', CIFAR10_URL),
        md5: env.DDPM_CIFAR10_MD5 ? md5From(env.DDPM_CIFAR10_MD5, 'DDPM_CIFAR10_MD5') : CIFAR10_MD5,
        name: 'cifar-10-binary.tar.gz',
      },
    ],
    urlVariable: 'DDPM_CIFAR10_URL',
  };
}

/** All four files, so the directory holds the full 60,000-image training set and the 10,000 test images. */
function mnist(env: NodeJS.ProcessEnv): DownloadableDataset {
  const base = urlFrom(env, 'DDPM_MNIST_BASE_URL', MNIST_BASE_URL);
  const md5s = { ...MNIST_MD5S, ...mnistMd5Overrides(env) };
  return {
    title: 'MNIST',
    target: 'mnist',
    files: Object.entries(md5s).map(([file, md5]) => ({
      url: new URL(file, base.endsWith('/') ? base : `${base}/`).href,
      md5,
      name: path.join('mnist', file),
    })),
    urlVariable: 'DDPM_MNIST_BASE_URL',
  };
}

const DOWNLOADS: Record<string, (env: NodeJS.ProcessEnv) => DownloadableDataset> = { cifar10, mnist };

/** What a preset downloads when no copy is found, if anything. */
export function downloadableDatasetFor(
  preset: string,
  env: NodeJS.ProcessEnv = process.env,
): DownloadableDataset | undefined {
  return DOWNLOADS[preset]?.(env);
}

/**
 * Whether the cache holds every file of the dataset, each verified (a stamp, or a re-hash). A file there
 * with another md5 is an error (see isVerifiedCopy).
 */
export async function isDownloadComplete(dataset: DownloadableDataset, cacheDir: string): Promise<boolean> {
  for (const file of dataset.files) {
    if (!(await isVerifiedCopy(path.join(cacheDir, file.name), file.md5, file.url))) return false;
  }
  return true;
}

/**
 * Downloads what the cache lacks (reusing verified files) and returns the path the dataset layer reads.
 * Every failure is one line that names the URL and how to do without the download.
 */
export async function ensureDownloaded(
  dataset: DownloadableDataset,
  cacheDir: string,
  log: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<string> {
  for (const file of dataset.files) {
    try {
      await downloadFile({ url: file.url, md5: file.md5, dest: path.join(cacheDir, file.name), log });
    } catch (err) {
      if (!(err instanceof DownloadError)) throw err;
      throw new UsageError(
        `${err.message}; pass --dataset PATH|s3://bucket/key to a copy of ${dataset.title} instead, ` +
          `or set ${dataset.urlVariable} to a mirror`,
      );
    }
  }
  return path.join(cacheDir, dataset.target);
}
