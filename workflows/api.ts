/**
 * The contract between the CLI (client), the TrainingRun workflow and the activities: names, payload
 * types, queries and signals. Payloads are small JSON (run ID, steps, object keys, metrics) — never
 * tensors. Safe to import from workflow code (no Node APIs).
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { RunConfig } from '../core/presets';

/** Task queue of the workflow itself (any worker process can host it). */
export const CONTROL_TASK_QUEUE = 'ddpm-control';
/** Task queue of the training, dataset and sampling activities (trainer workers). */
export const TRAINER_TASK_QUEUE = 'ddpm-trainer';

export const WORKFLOW_TYPE = 'trainingRun';

export interface RunSchedule {
  /** Steps between checkpoints; a training segment ends at each. */
  checkpointEvery: number;
  /** Steps between EMA sample grids (a multiple of checkpointEvery is best). */
  sampleEvery: number;
  /** Images per sample grid. */
  sampleCount: number;
  /** DDIM steps for periodic sample grids. */
  sampleSteps: number;
  /** Checkpoints kept in the store (the one `latest` names is never deleted). */
  keepCheckpoints: number;
  /** Segments per workflow execution before it continues as new (keeps histories small); default 100. */
  segmentsPerExecution?: number;
}

export interface Timeouts {
  /** A trainer that stops heartbeating this long is presumed dead and its segment is retried. */
  heartbeatSeconds: number;
  /** Upper bound for one segment (all its steps). */
  segmentHours: number;
}

export interface TrainingRunInput {
  runId: string;
  /** Where artifacts go: a local directory (absolute path or file://) or s3://bucket/prefix. */
  storeUri: string;
  /** Dataset source: a local path or an s3:// URI; prepared into `<runId>/dataset/` once. */
  dataset: string;
  config: RunConfig;
  schedule: RunSchedule;
  timeouts: Timeouts;
  /** TF.js backend the trainers use ('auto' picks the fastest available on each worker). */
  backend: 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
  /** Micro-batch override (memory); unset uses the backend's default. */
  microBatchSize?: number;
  /** Set by the workflow itself when it continues as new. */
  carried?: CarriedState;
}

/** What a continued-as-new execution inherits from the previous one. */
export interface CarriedState {
  datasetKey: string;
  step: number;
  loss: number | null;
  lastCheckpointKey: string | null;
  lastSampleKey: string | null;
  startedAt: string;
}

export type RunPhase =
  'preparing' | 'training' | 'sampling' | 'paused' | 'completed' | 'cancelled' | 'failed';

export interface RunStatus {
  runId: string;
  preset: string;
  phase: RunPhase;
  step: number;
  totalSteps: number;
  loss: number | null;
  imagesPerSec: number | null;
  lastCheckpointKey: string | null;
  lastSampleKey: string | null;
  storeUri: string;
  /** Set while paused or after failure: why. */
  note: string | null;
}

export interface TrainingRunResult {
  runId: string;
  finalStep: number;
  loss: number | null;
  checkpointKey: string | null;
  sampleKey: string | null;
}

export const statusQuery = defineQuery<RunStatus>('status');
/** Finish the current segment's step, checkpoint, and wait for `resume`. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');

// ---- activity payloads ----

export interface PrepareDatasetInput {
  runId: string;
  storeUri: string;
  dataset: string;
}

export interface PreparedDataset {
  /** Key of the dataset manifest in the store. */
  datasetKey: string;
  count: number;
  height: number;
  width: number;
  channels: number;
}

export interface TrainSegmentInput {
  runId: string;
  storeUri: string;
  datasetKey: string;
  config: RunConfig;
  /** Train until this many optimizer steps have been applied. */
  targetStep: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  backend: TrainingRunInput['backend'];
  microBatchSize?: number;
}

export interface TrainSegmentResult {
  step: number;
  loss: number;
  imagesPerSec: number;
  checkpointKey: string;
  /** Step this segment started from (0 for a fresh run) and what it skipped to get there. */
  resumedFromStep: number;
  skippedCheckpoints: string[];
  trainSeconds: number;
  /** Seconds spent before the first step (loading data, checkpoint, backend) and saving at the end. */
  overheadSeconds: number;
}

/** What a trainer reports in each heartbeat (shown in the Temporal UI's pending activity). */
export interface SegmentHeartbeat {
  step: number;
  targetStep: number;
  loss: number | null;
  imagesPerSec: number | null;
  phase: 'loading' | 'training' | 'checkpointing';
}

export interface SampleGridInput {
  runId: string;
  storeUri: string;
  checkpointKey: string;
  count: number;
  sampler: { kind: 'ancestral' | 'ddim'; steps?: number; eta?: number };
  backend: TrainingRunInput['backend'];
}

export interface SampleGridResult {
  key: string;
  step: number;
}

/** Error types the workflow must not retry: the same input would fail the same way. */
export const NON_RETRYABLE_ERRORS = [
  'InvalidInputError',
  'DatasetError',
  'CheckpointMismatchError',
  'TrainingDivergedError',
];

// ---- search attributes (registered on the server by infra/local; see infra/README.md for clusters) ----

export const SEARCH_ATTRIBUTES = {
  preset: defineSearchAttributeKey('DdpmPreset', SearchAttributeType.KEYWORD),
  step: defineSearchAttributeKey('DdpmStep', SearchAttributeType.INT),
  loss: defineSearchAttributeKey('DdpmLoss', SearchAttributeType.DOUBLE),
  status: defineSearchAttributeKey('DdpmStatus', SearchAttributeType.KEYWORD),
};
