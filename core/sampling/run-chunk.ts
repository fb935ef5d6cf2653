import type { RunConfig } from '../presets';
import { ChunkPlan, planChunks } from './chunks';
import { GenerateProgress, generateImages } from './generate';
import {
  ChunkRecord,
  SampleObjects,
  SampleSetManifest,
  SampleSetSpec,
  findChunk,
  finishSampleSet,
  sampleSetKey,
  writeChunk,
} from './sample-set';

export interface ChunkRunOptions {
  /** Write one PNG per image as well as the chunk's raw bytes. */
  images: boolean;
  /** The active TF.js backend's name, recorded with the chunk. */
  backend: string;
  onProgress?: (p: GenerateProgress) => void | Promise<void>;
}

/**
 * Samples one chunk of a set into the store, or reuses it when an earlier attempt already committed it
 * with the same definition. The one chunk runner both the local `sample` command and the pool's
 * `sampleChunk` activity use.
 */
export async function runSampleChunk(
  store: SampleObjects,
  config: RunConfig,
  weights: Float32Array,
  spec: SampleSetSpec,
  chunk: ChunkPlan,
  opts: ChunkRunOptions,
): Promise<{ record: ChunkRecord; reused: boolean }> {
  const setKey = sampleSetKey(spec);
  const existing = await findChunk(store, setKey, spec, chunk, opts.images);
  if (existing) return { record: existing, reused: true };
  const started = performance.now();
  const pixels = await generateImages(config, weights, {
    first: chunk.first,
    count: chunk.count,
    seed: spec.seed,
    sampler: spec.sampler,
    batchSize: spec.batch,
    onProgress: opts.onProgress,
  });
  const { imageSize: s, inChannels: c } = config.model;
  const record = await writeChunk(
    store,
    setKey,
    spec,
    chunk,
    pixels,
    { height: s, width: s, channels: c },
    {
      images: opts.images,
      backend: opts.backend,
      seconds: (performance.now() - started) / 1000,
    },
  );
  return { record, reused: false };
}

/** Progress of a whole set sampled in one process. */
export interface SetProgress {
  imagesDone: number;
  imagesTotal: number;
  /** Images done counting partly denoised batches pro rata: smooth progress for long batches. */
  imagesEquivalent: number;
}

/**
 * A whole set in this process: the same chunks, keys and bytes the pool would produce (on the same
 * backend), one chunk after another, then the manifest.
 */
export async function sampleSetLocally(
  store: SampleObjects,
  config: RunConfig,
  weights: Float32Array,
  spec: SampleSetSpec,
  opts: Omit<ChunkRunOptions, 'onProgress'> & {
    chunkImages?: number;
    onProgress?: (p: SetProgress) => void | Promise<void>;
  },
): Promise<SampleSetManifest> {
  const records: ChunkRecord[] = [];
  let before = 0;
  for (const chunk of planChunks(spec.count, spec.batch, opts.chunkImages)) {
    const { record } = await runSampleChunk(store, config, weights, spec, chunk, {
      images: opts.images,
      backend: opts.backend,
      onProgress: (p) =>
        opts.onProgress?.({
          imagesDone: before + p.imagesDone,
          imagesTotal: spec.count,
          imagesEquivalent: before + (p.stepsDone / p.stepsTotal) * p.imagesTotal,
        }),
    });
    records.push(record);
    before += chunk.count;
    await opts.onProgress?.({ imagesDone: before, imagesTotal: spec.count, imagesEquivalent: before });
  }
  const { imageSize: s, inChannels: c } = config.model;
  return finishSampleSet(store, spec, { height: s, width: s, channels: c }, config.preset, records);
}
