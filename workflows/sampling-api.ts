/**
 * The contract of sampling and inpainting on the trainer pool: payloads of the `sampleImages` and
 * `inpaintImage` workflows and their activities, and the progress query. Payloads are small JSON (steps,
 * counts, object keys); images only travel through the store. Safe to import from workflow code.
 */
import { defineQuery } from '@temporalio/workflow';
import type { ChunkPlan } from '../core/sampling/chunks';
import type { ChunkRecord, ImageShape } from '../core/sampling/sample-set';
import type { SamplerChoice } from '../core/sampling/sampler-choice';
import { TRAINER_TASK_QUEUE, TrainingRunInput } from './api';

export const SAMPLE_IMAGES_WORKFLOW = 'sampleImages';
export const INPAINT_IMAGE_WORKFLOW = 'inpaintImage';

/** N images from one checkpoint's EMA weights, as a sample set under `<run>/samples/<step>/`. */
export interface SampleImagesInput {
  runId: string;
  storeUri: string;
  /** The checkpoint (resolved by the caller: workflow code cannot read the store). */
  step: number;
  sampler: SamplerChoice;
  seed: number;
  count: number;
  /** Images denoised together; part of what defines the images (see core/sampling/chunks.ts). */
  batch: number;
  /** Images per chunk activity, a multiple of `batch`; default: one batch, more above 64 chunks. */
  chunkImages?: number;
  /** Write one PNG per image besides the chunks' raw bytes (default true; FID-sized sets may skip it). */
  images?: boolean;
  backend: TrainingRunInput['backend'];
  /** The trainer pool's task queue (a data-parallel run's `parallel.pool`); default the shared trainer queue. */
  pool?: string;
  /** A chunk that stops heartbeating this long is presumed lost and runs again elsewhere; default 120. */
  heartbeatSeconds?: number;
}

export interface SampleImagesResult {
  /** The set's folder, its manifest and grid (keys relative to the store). */
  setKey: string;
  manifestKey: string;
  gridKey: string;
  step: number;
  count: number;
  chunks: number;
  /** Chunks an earlier attempt had already committed. */
  reusedChunks: number;
  /** The backends that computed the chunks. */
  backends: string[];
}

/** One chunk of a set: the request and which images. */
export interface SampleChunkInput {
  request: SampleImagesInput;
  chunk: ChunkPlan;
}

export interface SampleChunkResult {
  record: ChunkRecord;
  reused: boolean;
  /** The checkpoint's preset and image shape, so committing the set needs no checkpoint load. */
  preset: string;
  shape: ImageShape;
}

/** What a chunk reports in each heartbeat (the Temporal UI's pending activity; the CLI's progress). */
export interface SampleChunkHeartbeat {
  first: number;
  count: number;
  phase: 'loading' | 'sampling' | 'writing';
  /** Images of this chunk done, counting a partly denoised batch pro rata. */
  imagesDone: number;
  stepsDone: number;
  stepsTotal: number;
  imagesPerSec: number | null;
}

export interface FinishSampleSetInput {
  request: SampleImagesInput;
  /** Every chunk's record, in index order. */
  chunks: ChunkRecord[];
  preset: string;
  shape: ImageShape;
}

export interface SampleImagesProgress {
  count: number;
  chunks: number;
  chunksDone: number;
  /** Images in finished chunks (running chunks report theirs in heartbeats). */
  imagesDone: number;
}

export const sampleImagesProgressQuery = defineQuery<SampleImagesProgress>('sampleImagesProgress');

/**
 * The workflow ID of a sample set: the same request maps to the same ID, so repeating a command attaches
 * to the running workflow instead of sampling twice.
 */
export function sampleImagesWorkflowId(input: SampleImagesInput): string {
  const s = input.sampler;
  const sampler = `${s.kind}${s.steps ?? ''}${s.eta ? `-eta${s.eta}` : ''}${s.clip === false ? '-noclip' : ''}`;
  return `${input.runId}-samples-${input.step}-${sampler}-seed${input.seed}-n${input.count}-b${input.batch}`;
}

export function poolQueue(pool: string | undefined): string {
  return pool ?? TRAINER_TASK_QUEUE;
}

/** RePaint settings (core/diffusion/repaint.ts); unset fields take RePaint's defaults scaled to the run. */
export interface RePaintSettings {
  steps?: number;
  jumpLength?: number;
  resamplings?: number;
  eta?: number;
}

/** Inpaint one image: the image and mask PNGs are already in the store. */
export interface InpaintImageInput {
  runId: string;
  storeUri: string;
  step: number;
  imageKey: string;
  maskKey: string;
  /** Where the result PNG goes. */
  outKey: string;
  seed: number;
  repaint?: RePaintSettings;
  backend: TrainingRunInput['backend'];
  pool?: string;
  heartbeatSeconds?: number;
}

export interface InpaintImageResult {
  key: string;
  step: number;
  steps: number;
  jumpLength: number;
  resamplings: number;
  modelEvaluations: number;
  seconds: number;
}

export interface InpaintHeartbeat {
  phase: 'loading' | 'inpainting' | 'writing';
  done: number;
  total: number;
}
