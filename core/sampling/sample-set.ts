import { createHash } from 'node:crypto';
import { encodePngGrid } from '../data';
import { InvalidInputError } from '../errors';
import { runKeys, sampleSetKeys } from '../store-layout';
import type { ChunkPlan } from './chunks';
import { ResolvedSamplerChoice, samplerLabel } from './sampler-choice';

/**
 * A sample set in the store: the images one checkpoint makes under one sampler, seed and count, written
 * chunk by chunk (by one process or by many trainers) and committed by its manifest. Layout in
 * core/store-layout.ts (`sampleSetKeys`).
 */

/** The slice of an object store a sample set needs (store/'s local and S3 stores implement it). */
export interface SampleObjects {
  readonly uri: string;
  put(key: string, body: Uint8Array | string): Promise<void>;
  get(key: string): Promise<Uint8Array>;
  tryGet(key: string): Promise<Uint8Array | null>;
}

/** What defines a set's images. */
export interface SampleSetSpec {
  runId: string;
  /** The checkpoint whose EMA weights sample. */
  step: number;
  sampler: ResolvedSamplerChoice;
  seed: number;
  count: number;
  /** Images denoised together; part of the definition (see chunks.ts). */
  batch: number;
}

export interface ImageShape {
  height: number;
  width: number;
  channels: number;
}

/** What a chunk wrote; stored next to its bytes as the chunk's commit record. */
export interface ChunkRecord {
  first: number;
  count: number;
  batch: number;
  step: number;
  seed: number;
  sampler: ResolvedSamplerChoice;
  sha256: string;
  bytes: number;
  /** Whether one PNG per image was written too. */
  images: boolean;
  /** The TF.js backend that computed it (a pool may mix backends, whose float rounding differs). */
  backend: string;
  seconds: number;
}

export const SAMPLE_SET_FORMAT = 'ddpm-sample-set';

export interface SampleSetManifest extends SampleSetSpec, ImageShape {
  format: typeof SAMPLE_SET_FORMAT;
  version: 1;
  preset: string;
  /** Keys relative to the store root. */
  grid: string;
  gridCount: number;
  images: boolean;
  chunks: { first: number; count: number; key: string; sha256: string; backend: string }[];
  createdAt: string;
}

/** Images shown in a set's grid.png: the first ones (a 50k-image grid would help nobody). */
export const GRID_IMAGES = 64;

/** `ddim50-seed7-n64`: the folder name of a set under `<run>/samples/<step>/`. */
export function sampleSetName(spec: Pick<SampleSetSpec, 'sampler' | 'seed' | 'count'>): string {
  return `${samplerLabel(spec.sampler)}-seed${spec.seed}-n${spec.count}`;
}

export function sampleSetKey(spec: SampleSetSpec): string {
  return runKeys.sampleSet(spec.runId, spec.step, sampleSetName(spec));
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function imageBytes(shape: ImageShape): number {
  return shape.height * shape.width * shape.channels;
}

function sameDefinition(r: ChunkRecord, spec: SampleSetSpec, chunk: ChunkPlan): boolean {
  return (
    r.first === chunk.first &&
    r.count === chunk.count &&
    r.batch === spec.batch &&
    r.step === spec.step &&
    r.seed === spec.seed &&
    JSON.stringify(r.sampler) === JSON.stringify(spec.sampler)
  );
}

/**
 * The chunk's record if it was already written for exactly this definition and its bytes still verify:
 * a retried chunk activity (its trainer died after writing) or a repeated command skips the work.
 */
export async function findChunk(
  store: SampleObjects,
  setKey: string,
  spec: SampleSetSpec,
  chunk: ChunkPlan,
  wantImages: boolean,
): Promise<ChunkRecord | null> {
  const raw = await store.tryGet(sampleSetKeys.chunkRecord(setKey, chunk.first));
  if (!raw) return null;
  let record: ChunkRecord;
  try {
    record = JSON.parse(Buffer.from(raw).toString('utf8')) as ChunkRecord;
  } catch {
    return null;
  }
  if (!sameDefinition(record, spec, chunk) || (wantImages && !record.images)) return null;
  const pixels = await store.tryGet(sampleSetKeys.chunkPixels(setKey, chunk.first));
  return pixels && sha256(pixels) === record.sha256 ? record : null;
}

/** PNG bytes of one image (gray, RGB or RGBA by channel count), exactly the given pixels. */
export function encodeImagePng(pixels: Uint8Array, shape: ImageShape): Uint8Array {
  return encodePngGrid(pixels, 1, shape.height, shape.width, shape.channels, { padding: 0 });
}

/** How many PNG uploads run at once: S3 round trips dominate small objects. */
const PUT_CONCURRENCY = 8;

/**
 * Writes one chunk: its images as PNGs (unless `images` is false), then its raw bytes, then the record
 * that commits it. A crash midway leaves no record, so the chunk is redone.
 */
export async function writeChunk(
  store: SampleObjects,
  setKey: string,
  spec: SampleSetSpec,
  chunk: ChunkPlan,
  pixels: Uint8Array,
  shape: ImageShape,
  opts: { images: boolean; backend: string; seconds: number },
): Promise<ChunkRecord> {
  const per = imageBytes(shape);
  if (pixels.length !== chunk.count * per) {
    throw new Error(`chunk at ${chunk.first}: ${pixels.length} bytes for ${chunk.count} images of ${per}`);
  }
  if (opts.images) {
    for (let i = 0; i < chunk.count; i += PUT_CONCURRENCY) {
      const group = Array.from({ length: Math.min(PUT_CONCURRENCY, chunk.count - i) }, (_, k) => i + k);
      await Promise.all(
        group.map((j) =>
          store.put(
            sampleSetKeys.image(setKey, chunk.first + j),
            encodeImagePng(pixels.subarray(j * per, (j + 1) * per), shape),
          ),
        ),
      );
    }
  }
  await store.put(sampleSetKeys.chunkPixels(setKey, chunk.first), pixels);
  const record: ChunkRecord = {
    first: chunk.first,
    count: chunk.count,
    batch: spec.batch,
    step: spec.step,
    seed: spec.seed,
    sampler: spec.sampler,
    sha256: sha256(pixels),
    bytes: pixels.length,
    images: opts.images,
    backend: opts.backend,
    seconds: opts.seconds,
  };
  await store.put(sampleSetKeys.chunkRecord(setKey, chunk.first), JSON.stringify(record, null, 2));
  return record;
}

async function verifiedChunkPixels(
  store: SampleObjects,
  setKey: string,
  chunk: { first: number; count: number; sha256: string },
  per: number,
): Promise<Uint8Array> {
  const key = sampleSetKeys.chunkPixels(setKey, chunk.first);
  const bytes = await store.get(key);
  if (bytes.length !== chunk.count * per || sha256(bytes) !== chunk.sha256) {
    throw new InvalidInputError(
      `${store.uri}/${key}: contents do not match the set's record (damaged or rewritten)`,
    );
  }
  return bytes;
}

/**
 * Commits a set whose chunks are all written: checks they tile 0..count-1 in order, writes grid.png from
 * the first images, then manifest.json. `chunks` must be in index order (the gathering is by index, not
 * by completion).
 */
export async function finishSampleSet(
  store: SampleObjects,
  spec: SampleSetSpec,
  shape: ImageShape,
  preset: string,
  chunks: ChunkRecord[],
): Promise<SampleSetManifest> {
  const setKey = sampleSetKey(spec);
  let next = 0;
  for (const c of chunks) {
    if (c.first !== next)
      throw new Error(`sample set ${setKey}: chunk at ${c.first} where ${next} was expected`);
    if (!sameDefinition(c, spec, c))
      throw new Error(`sample set ${setKey}: chunk at ${c.first} was made differently`);
    next += c.count;
  }
  if (next !== spec.count)
    throw new Error(`sample set ${setKey}: chunks hold ${next} of ${spec.count} images`);

  const per = imageBytes(shape);
  const gridCount = Math.min(GRID_IMAGES, spec.count);
  const gridPixels = new Uint8Array(gridCount * per);
  for (const c of chunks) {
    if (c.first >= gridCount) break;
    const bytes = await verifiedChunkPixels(store, setKey, c, per);
    const n = Math.min(c.count, gridCount - c.first);
    gridPixels.set(bytes.subarray(0, n * per), c.first * per);
  }
  const grid = sampleSetKeys.grid(setKey);
  await store.put(grid, encodePngGrid(gridPixels, gridCount, shape.height, shape.width, shape.channels));
  const manifest: SampleSetManifest = {
    format: SAMPLE_SET_FORMAT,
    version: 1,
    ...spec,
    ...shape,
    preset,
    grid,
    gridCount,
    images: chunks.every((c) => c.images),
    chunks: chunks.map((c) => ({
      first: c.first,
      count: c.count,
      key: sampleSetKeys.chunkPixels(setKey, c.first),
      sha256: c.sha256,
      backend: c.backend,
    })),
    createdAt: new Date().toISOString(),
  };
  await store.put(sampleSetKeys.manifest(setKey), JSON.stringify(manifest, null, 2));
  return manifest;
}

/** A committed set's manifest, or null when the set is absent or not yet complete. */
export async function readSampleSetManifest(
  store: SampleObjects,
  setKey: string,
): Promise<SampleSetManifest | null> {
  const raw = await store.tryGet(sampleSetKeys.manifest(setKey));
  if (!raw) return null;
  const m = JSON.parse(Buffer.from(raw).toString('utf8')) as SampleSetManifest;
  if (m.format !== SAMPLE_SET_FORMAT) throw new InvalidInputError(`${store.uri}/${setKey}: not a sample set`);
  return m;
}

/**
 * All images of a committed set, NHWC uint8 in index order, every chunk checked against its sha256:
 * what evaluation (FID, classifier score) reads.
 */
export async function readSampleSet(
  store: SampleObjects,
  setKey: string,
): Promise<{ manifest: SampleSetManifest; pixels: Uint8Array }> {
  const manifest = await readSampleSetManifest(store, setKey);
  if (!manifest) throw new InvalidInputError(`${store.uri}/${setKey}: no committed sample set (no manifest)`);
  const per = imageBytes(manifest);
  const pixels = new Uint8Array(manifest.count * per);
  for (const c of manifest.chunks) {
    pixels.set(await verifiedChunkPixels(store, setKey, c, per), c.first * per);
  }
  return { manifest, pixels };
}
