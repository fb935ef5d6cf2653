import { Context } from '@temporalio/activity';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { BackendInfo, BackendName, initBackend } from '../core/backend';
import { DatasetError, ShardedImages, joinShards, parseShardManifest } from '../core/data';

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
 * so the trainer is not declared dead merely because the store is slow. Beats at least four times per
 * heartbeat timeout (every 2 s at most; Temporal itself throttles what it sends on).
 */
export async function withHeartbeats<T>(work: Promise<T>, details: () => unknown): Promise<T> {
  const ctx = Context.current();
  const timeoutMs = ctx.info.heartbeatTimeoutMs;
  const everyMs = Math.max(10, Math.min(2000, timeoutMs ? timeoutMs / 4 : 2000));
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

/** Progress of a dataset download, as heartbeat details show it. */
export interface CopyProgress {
  objects: number;
  of: number;
  bytes: number;
}

/**
 * Brings an s3:// dataset (one object, or every object under a prefix) into a temporary directory so the
 * file readers can open it; returns the local path and a cleanup function. Heartbeats all along, with
 * the objects and bytes copied so far: a large dataset over a slow link takes longer than any timeout.
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
  const progress: CopyProgress = { objects: 0, of: 0, bytes: 0 };
  const beat = () => ({ phase: 'downloading', source, ...progress });
  const ctx = Context.current();
  try {
    const single = key ? await withHeartbeats(store.tryGet(key), beat) : null;
    if (single) {
      const file = join(tmp, key.slice(key.lastIndexOf('/') + 1));
      await writeFile(file, single);
      return { path: file, cleanup };
    }
    const keys = await withHeartbeats(store.list(key ? `${key}/` : ''), beat);
    if (keys.length === 0) throw new DatasetError(source, 'no objects at this S3 URI');
    progress.of = keys.length;
    for (const k of keys) {
      const file = join(tmp, relative(key, k));
      await mkdir(dirname(file), { recursive: true });
      const bytes = await withHeartbeats(store.get(k), beat);
      await writeFile(file, bytes);
      progress.objects++;
      progress.bytes += bytes.length;
      ctx.heartbeat(beat());
    }
    return { path: tmp, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
