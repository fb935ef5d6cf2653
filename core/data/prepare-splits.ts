import { loadHeldOutSplit } from './held-out';
import { loadImageDataset } from './load';
import { writeShardedSplit, type ShardManifest, type ShardObjects } from './shards';

export interface PreparedSplits {
  train: ShardManifest;
  heldOut: ShardManifest | null;
}

/**
 * Reads a dataset source (a local path or the embedded digits) and writes its training split and its
 * declared held-out split into the store as checksummed shards with labels. The held-out split goes
 * first and the training manifest last, recording where the held-out one is (relative to it), so a
 * training manifest that exists is always complete.
 */
export async function prepareSplits(
  store: ShardObjects,
  keys: { train: string; heldOut: string },
  source: { uri: string; localPath: string },
  onObject: (name: string) => void = () => undefined,
): Promise<PreparedSplits> {
  const ds = await loadImageDataset(source.localPath, { split: 'train' });
  const heldOutImages = await loadHeldOutSplit(source.localPath);
  const dir = keys.train.slice(0, keys.train.lastIndexOf('/') + 1);
  if (!keys.heldOut.startsWith(dir))
    throw new Error(`held-out key ${keys.heldOut} is not beside ${keys.train}`);
  const heldOut = heldOutImages
    ? await writeShardedSplit(store, keys.heldOut, { ...heldOutImages, source: source.uri }, {}, onObject)
    : null;
  const train = await writeShardedSplit(
    store,
    keys.train,
    { ...ds, source: source.uri },
    { heldOut: heldOut ? keys.heldOut.slice(dir.length) : null },
    onObject,
  );
  return { train, heldOut };
}
