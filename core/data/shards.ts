import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DatasetError } from './errors';
import type { ImageDataset } from './types';

/**
 * A prepared dataset in the object store: raw NHWC uint8 shards plus a manifest with their sha256, so
 * every trainer reads exactly the same pixels in the same order, from local disk or S3 alike.
 */
export const SHARD_FORMAT = 'ddpm-image-shards';

const count = z.number().int().min(0);
const ShardManifestSchema = z.object({
  format: z.literal(SHARD_FORMAT),
  version: z.literal(1),
  source: z.string(),
  count,
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  channels: z.number().int().positive(),
  shards: z.array(
    z.object({
      name: z.string().regex(/^shard-\d+\.u8$/, 'expected shard-<n>.u8'),
      count,
      sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 in hex'),
    }),
  ),
});

export type ShardManifest = z.infer<typeof ShardManifestSchema>;

export interface ShardedImages {
  count: number;
  height: number;
  width: number;
  channels: number;
  pixels: Uint8Array;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export function splitIntoShards(
  ds: Pick<ImageDataset, 'source' | 'count' | 'height' | 'width' | 'channels' | 'pixels'>,
  imagesPerShard = 8192,
): { manifest: ShardManifest; shards: Map<string, Uint8Array> } {
  const perImage = ds.height * ds.width * ds.channels;
  const shards = new Map<string, Uint8Array>();
  const entries: ShardManifest['shards'] = [];
  for (let first = 0, i = 0; first < ds.count; first += imagesPerShard, i++) {
    const count = Math.min(imagesPerShard, ds.count - first);
    const bytes = ds.pixels.subarray(first * perImage, (first + count) * perImage);
    const name = `shard-${String(i).padStart(5, '0')}.u8`;
    shards.set(name, bytes);
    entries.push({ name, count, sha256: sha256(bytes) });
  }
  const { source, count, height, width, channels } = ds;
  return {
    manifest: { format: SHARD_FORMAT, version: 1, source, count, height, width, channels, shards: entries },
    shards,
  };
}

/** Parses and validates a dataset manifest; anything malformed is a DatasetError naming the field. */
export function parseShardManifest(bytes: Uint8Array, where: string): ShardManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new DatasetError(where, 'dataset manifest is not valid JSON');
  }
  const head = z.object({ format: z.literal(SHARD_FORMAT), version: z.literal(1) }).safeParse(raw);
  if (!head.success) throw new DatasetError(where, `not a ${SHARD_FORMAT} v1 manifest`);
  const m = ShardManifestSchema.safeParse(raw);
  if (!m.success) {
    const issue = m.error.issues[0];
    throw new DatasetError(where, `dataset manifest ${issue?.path.join('.')}: ${issue?.message}`);
  }
  return m.data;
}

/** Reassembles the shards, verifying each one's size and checksum. */
export async function joinShards(
  manifest: ShardManifest,
  readShard: (name: string) => Promise<Uint8Array>,
  where: string,
): Promise<ShardedImages> {
  const perImage = manifest.height * manifest.width * manifest.channels;
  const pixels = new Uint8Array(manifest.count * perImage);
  let offset = 0;
  for (const s of manifest.shards) {
    const bytes = await readShard(s.name);
    if (bytes.length !== s.count * perImage || sha256(bytes) !== s.sha256) {
      throw new DatasetError(`${where}/${s.name}`, 'shard size or checksum does not match the manifest');
    }
    pixels.set(bytes, offset);
    offset += bytes.length;
  }
  if (offset !== pixels.length) throw new DatasetError(where, 'shards do not add up to the manifest count');
  const { count, height, width, channels } = manifest;
  return { count, height, width, channels, pixels };
}
