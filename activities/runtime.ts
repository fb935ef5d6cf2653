import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { BackendInfo, BackendName, initBackend } from '../core/backend';
import { CheckpointError } from '../core/checkpoint/checkpoint';
import { DatasetError, ShardedImages, joinShards, parseShardManifest } from '../core/data';
import { InvalidInputError } from '../core/errors';
import { ObjectStore, openStore } from '../store';

/**
 * Per-process state shared by the activities of one trainer worker: the TF.js backend (chosen once),
 * open stores, and the prepared dataset last used (so consecutive segments do not reload it).
 */
let backend: BackendInfo | null = null;
const stores = new Map<string, ObjectStore>();
let datasetCache: { key: string; images: ShardedImages } | null = null;

/**
 * Awaits slow I/O (a checkpoint upload riding out an S3 outage, a dataset download) while heartbeating,
 * so the trainer is not declared dead merely because the store is slow.
 */
export async function withHeartbeats<T>(
  work: Promise<T>,
  details: () => unknown,
  everyMs = 2000,
): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(details()), everyMs);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/** Lets the worker's event loop send heartbeats and notice cancellation between synchronous TF.js work. */
export const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export function log(line: string): void {
  Context.current().log.info(line);
}

export async function ensureBackend(requested: BackendName | 'auto'): Promise<BackendInfo> {
  if (backend && (requested === 'auto' || requested === backend.name)) return backend;
  backend = await initBackend(requested, (line) => log(line));
  return backend;
}

export function storeFor(uri: string): ObjectStore {
  let s = stores.get(uri);
  if (!s) {
    s = openStore(uri);
    stores.set(uri, s);
  }
  return s;
}

export async function loadPreparedDataset(store: ObjectStore, manifestKey: string): Promise<ShardedImages> {
  const cacheKey = `${store.uri}/${manifestKey}`;
  if (datasetCache?.key === cacheKey) return datasetCache.images;
  const dir = manifestKey.slice(0, manifestKey.lastIndexOf('/'));
  const manifest = parseShardManifest(await store.get(manifestKey), `${store.uri}/${manifestKey}`);
  const images = await joinShards(manifest, (name) => store.get(`${dir}/${name}`), `${store.uri}/${dir}`);
  datasetCache = { key: cacheKey, images };
  return images;
}

/**
 * Brings an s3:// dataset (one object, or every object under a prefix) into a temporary directory so the
 * file readers can open it; returns the local path and a cleanup function.
 */
export async function localCopyOf(source: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  if (!source.startsWith('s3://')) return { path: source, cleanup: async () => undefined };
  const rest = source.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/$/, '');
  const store = storeFor(`s3://${bucket}`);
  const tmp = await mkdtemp(join(tmpdir(), 'ddpm-dataset-'));
  const cleanup = () => rm(tmp, { recursive: true, force: true });
  try {
    const single = key ? await store.tryGet(key) : null;
    if (single) {
      const file = join(tmp, key.slice(key.lastIndexOf('/') + 1));
      await writeFile(file, single);
      return { path: file, cleanup };
    }
    const keys = await store.list(key ? `${key}/` : '');
    if (keys.length === 0) throw new DatasetError(source, 'no objects at this S3 URI');
    for (const k of keys) {
      const file = join(tmp, relative(key, k));
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, await store.get(k));
    }
    return { path: tmp, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/**
 * Input problems fail the workflow at once instead of being retried: Temporal matches the error's type
 * against the retry policy's non-retryable types, and this makes the type explicit.
 */
export function asNonRetryable(err: unknown): unknown {
  if (err instanceof DatasetError) return ApplicationFailure.nonRetryable(err.message, 'DatasetError');
  if (err instanceof InvalidInputError)
    return ApplicationFailure.nonRetryable(err.message, 'InvalidInputError');
  if (err instanceof CheckpointError && /does not match this run/.test(err.message)) {
    return ApplicationFailure.nonRetryable(err.message, 'CheckpointMismatchError');
  }
  return err;
}
