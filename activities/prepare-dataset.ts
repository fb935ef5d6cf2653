import { heartbeat } from '@temporalio/activity';
import { parseShardManifest, prepareSplits } from '../core/data';
import { runKeys } from '../core/store-layout';
import type { PrepareDatasetInput, PreparedDataset } from '../workflows/api';
import { localCopyOf, log, storeFor, withHeartbeats } from './runtime';
import { asActivityFailure } from './failures';

/**
 * Reads the dataset source once and writes it into the store as checksummed shards under
 * `<runId>/dataset/` (labels too, when the source has them), and its declared held-out split under
 * `<runId>/dataset/test/`; the training manifest goes last. Idempotent: a run that already has a valid
 * manifest keeps it.
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
        heldOutKey: m.heldOut ? runKeys.heldOutManifest(input.runId) : null,
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
      let phase: Record<string, string> = { phase: 'reading', source: input.dataset };
      heartbeat(phase);
      const { train, heldOut } = await withHeartbeats(
        prepareSplits(
          store,
          { train: manifestKey, heldOut: runKeys.heldOutManifest(input.runId) },
          { uri: input.dataset, localPath: local.path },
          (name) => {
            phase = { phase: 'writing', shard: name };
            heartbeat(phase);
          },
        ),
        () => phase,
      );
      log(
        `dataset prepared: ${train.count} images ${train.height}x${train.width}x${train.channels}` +
          (heldOut ? `, ${heldOut.count} held out` : ', no held-out split'),
      );
      return {
        datasetKey: manifestKey,
        heldOutKey: heldOut ? runKeys.heldOutManifest(input.runId) : null,
        count: train.count,
        height: train.height,
        width: train.width,
        channels: train.channels,
      };
    } finally {
      await local.cleanup();
    }
  } catch (err) {
    throw asActivityFailure(err);
  }
}
