import { heartbeat } from '@temporalio/activity';
import { loadHeldOutSplit, loadImageDataset, parseShardManifest, writeShardedSplit } from '../core/data';
import { datasetManifestKey, heldOutManifestKey } from '../core/run-layout';
import type { PrepareDatasetInput, PreparedDataset } from '../workflows/api';
import { asNonRetryable, localCopyOf, log, storeFor } from './runtime';

/** Where the held-out manifest sits relative to the training manifest (recorded in the latter). */
const HELD_OUT_RELATIVE = 'test/manifest.json';

/**
 * Reads the dataset source once and writes it into the store as checksummed shards under
 * `<runId>/dataset/` (labels too, when the source has them), and its declared held-out split under
 * `<runId>/dataset/test/`; the training manifest goes last. Idempotent: a run that already has a valid
 * manifest keeps it.
 */
export async function prepareDataset(input: PrepareDatasetInput): Promise<PreparedDataset> {
  const store = storeFor(input.storeUri);
  const manifestKey = datasetManifestKey(input.runId);
  try {
    const existing = await store.tryGet(manifestKey);
    if (existing) {
      const m = parseShardManifest(existing, `${store.uri}/${manifestKey}`);
      log(`dataset already prepared: ${m.count} images from ${m.source}`);
      return {
        datasetKey: manifestKey,
        heldOutKey: m.heldOut ? heldOutManifestKey(input.runId) : null,
        count: m.count,
        height: m.height,
        width: m.width,
        channels: m.channels,
      };
    }
    heartbeat({ phase: 'reading', source: input.dataset });
    const local = await localCopyOf(input.dataset);
    try {
      const ds = await loadImageDataset(local.path, { split: 'train' });
      const heldOut = await loadHeldOutSplit(local.path);
      const beat = (name: string) => heartbeat({ phase: 'writing', shard: name });
      if (heldOut) {
        await writeShardedSplit(
          store,
          heldOutManifestKey(input.runId),
          { ...heldOut, source: input.dataset },
          {},
          beat,
        );
      }
      await writeShardedSplit(
        store,
        manifestKey,
        { ...ds, source: input.dataset },
        { heldOut: heldOut ? HELD_OUT_RELATIVE : null },
        beat,
      );
      log(
        `dataset prepared: ${ds.count} images ${ds.height}x${ds.width}x${ds.channels}` +
          (heldOut ? `, ${heldOut.count} held out` : ', no held-out split'),
      );
      return {
        datasetKey: manifestKey,
        heldOutKey: heldOut ? heldOutManifestKey(input.runId) : null,
        count: ds.count,
        height: ds.height,
        width: ds.width,
        channels: ds.channels,
      };
    } finally {
      await local.cleanup();
    }
  } catch (err) {
    throw asNonRetryable(err);
  }
}
