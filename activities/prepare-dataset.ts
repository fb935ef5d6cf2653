import { heartbeat } from '@temporalio/activity';
import { loadImageDataset, parseShardManifest, splitIntoShards } from '../core/data';
import { runKeys } from '../core/store-layout';
import type { PrepareDatasetInput, PreparedDataset } from '../workflows/api';
import { localCopyOf, log, storeFor, withHeartbeats } from './runtime';
import { asActivityFailure } from './failures';

/**
 * Reads the dataset source once and writes it into the store as checksummed shards under
 * `<runId>/dataset/`, manifest last. Idempotent: a run that already has a valid manifest keeps it.
 */
export async function prepareDataset(input: PrepareDatasetInput): Promise<PreparedDataset> {
  const store = storeFor(input.storeUri);
  const manifestKey = runKeys.datasetManifest(input.runId);
  try {
    const existing = await store.tryGet(manifestKey);
    if (existing) {
      const m = parseShardManifest(existing, `${store.uri}/${manifestKey}`);
      log(`dataset already prepared: ${m.count} images from ${m.source}`);
      return {
        datasetKey: manifestKey,
        count: m.count,
        height: m.height,
        width: m.width,
        channels: m.channels,
      };
    }
    // Every phase heartbeats while it runs, not just between phases: reading a large dataset from slow
    // storage or writing its shards to a slow store outlasts the heartbeat timeout.
    const local = await localCopyOf(input.dataset);
    try {
      const reading = { phase: 'reading', source: input.dataset };
      heartbeat(reading);
      const ds = await withHeartbeats(loadImageDataset(local.path, { split: 'train' }), () => reading);
      const { manifest, shards } = splitIntoShards({ ...ds, source: input.dataset });
      for (const [name, bytes] of shards) {
        const writing = { phase: 'writing', shard: name };
        heartbeat(writing);
        await withHeartbeats(store.put(`${runKeys.datasetPrefix(input.runId)}${name}`, bytes), () => writing);
      }
      await store.put(manifestKey, JSON.stringify(manifest, null, 2));
      log(
        `dataset prepared: ${ds.count} images ${ds.height}x${ds.width}x${ds.channels} in ${shards.size} shards`,
      );
      return {
        datasetKey: manifestKey,
        count: ds.count,
        height: ds.height,
        width: ds.width,
        channels: ds.channels,
      };
    } finally {
      await local.cleanup();
    }
  } catch (err) {
    throw asActivityFailure(err);
  }
}
