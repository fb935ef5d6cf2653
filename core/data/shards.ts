import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DatasetError } from './errors';
import type { ImageDataset } from './types';

/**
 * A prepared dataset in the object store: raw NHWC uint8 shards plus a manifest with their sha256, so
 * every trainer reads exactly the same pixels in the same order, from local disk or S3 alike.
 */
export const SHARD_FORMAT = 'ddpm-image-shards';

const LABELS_NAME = 'labels.u8';
const count = z.number().int().min(0);
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'expected a sha256 in hex');
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
      sha256: sha256Hex,
    }),
  ),
  /** One class index per image (uint8, image order), when the source has labels. Absent in older manifests. */
  labels: z.object({ name: z.literal(LABELS_NAME), sha256: sha256Hex }).optional(),
  /**
   * Training manifests only: the held-out split's manifest, relative to this one ('test/manifest.json'),
   * or null when the source declares none. Absent in manifests written before held-out splits were kept.
   */
  heldOut: z
    .string()
    .regex(/^[a-z0-9-]+\/manifest\.json$/, 'expected <folder>/manifest.json beside this manifest')
    .nullable()
    .optional(),
});

export type ShardManifest = z.infer<typeof ShardManifestSchema>;

/** The slice of an object store that prepared splits need (store/'s local and S3 stores implement it). */
export interface ShardObjects {
  readonly uri: string;
  put(key: string, body: Uint8Array | string): Promise<void>;
  get(key: string): Promise<Uint8Array>;
}

export interface ShardedImages {
  count: number;
  height: number;
  width: number;
  channels: number;
  pixels: Uint8Array;
  /** Present when the manifest lists labels. */
  labels?: Uint8Array;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export function splitIntoShards(
  ds: Pick<ImageDataset, 'source' | 'count' | 'height' | 'width' | 'channels' | 'pixels' | 'labels'>,
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
  const manifest: ShardManifest = {
    format: SHARD_FORMAT,
    version: 1,
    source,
    count,
    height,
    width,
    channels,
    shards: entries,
  };
  if (ds.labels) {
    if (ds.labels.length !== ds.count) {
      throw new DatasetError(ds.source, `has ${ds.labels.length} labels for ${ds.count} images`);
    }
    shards.set(LABELS_NAME, ds.labels);
    manifest.labels = { name: LABELS_NAME, sha256: sha256(ds.labels) };
  }
  return { manifest, shards };
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
  if (!manifest.labels) return { count, height, width, channels, pixels };
  const labels = await readShard(manifest.labels.name);
  if (labels.length !== count || sha256(labels) !== manifest.labels.sha256) {
    throw new DatasetError(
      `${where}/${manifest.labels.name}`,
      'labels size or checksum does not match the manifest',
    );
  }
  return { count, height, width, channels, pixels, labels };
}

/**
 * Names a dataset by its contents (the shards' checksums and image shape), so caches derived from it
 * (classifier, reference statistics) are shared by every run that prepared the same data.
 */
export function datasetFingerprint(manifest: ShardManifest): string {
  const { count, height, width, channels, shards, labels } = manifest;
  const identity = JSON.stringify({ count, height, width, channels, shards, labels: labels?.sha256 ?? null });
  return sha256(Buffer.from(identity)).slice(0, 16);
}

const dirOf = (key: string) => key.slice(0, key.lastIndexOf('/'));

/**
 * Writes a split as shards (and labels) beside `manifestKey`, the manifest last: a reader sees the whole
 * split or none of it. `extra` goes into the manifest (e.g. the training manifest's heldOut pointer).
 */
export async function writeShardedSplit(
  store: ShardObjects,
  manifestKey: string,
  ds: Pick<ImageDataset, 'source' | 'count' | 'height' | 'width' | 'channels' | 'pixels' | 'labels'>,
  extra: Pick<ShardManifest, 'heldOut'> = {},
  onObject: (name: string) => void = () => undefined,
): Promise<ShardManifest> {
  const { manifest, shards } = splitIntoShards(ds);
  for (const [name, bytes] of shards) {
    onObject(name);
    await store.put(`${dirOf(manifestKey)}/${name}`, bytes);
  }
  const full = { ...manifest, ...extra };
  await store.put(manifestKey, JSON.stringify(full, null, 2));
  return full;
}

/** Reads a prepared split back, verifying every object against its manifest. */
export async function readShardedSplit(
  store: ShardObjects,
  manifestKey: string,
): Promise<{ manifest: ShardManifest; images: ShardedImages }> {
  const manifest = parseShardManifest(await store.get(manifestKey), `${store.uri}/${manifestKey}`);
  const dir = dirOf(manifestKey);
  const images = await joinShards(manifest, (name) => store.get(`${dir}/${name}`), `${store.uri}/${dir}`);
  return { manifest, images };
}
