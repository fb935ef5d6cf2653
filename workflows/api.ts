/**
 * The contract between the CLI (client), the TrainingRun workflow and the activities: names, payload
 * types, queries and signals. Payloads are small JSON (run ID, steps, object keys, metrics) — never
 * tensors. Safe to import from workflow code (no Node APIs).
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';
import { NON_RETRYABLE_ERROR_TYPES } from '../core/errors';
import type { RunConfig } from '../core/presets';
import type { TrainingRunInput } from '../core/run-input';
import type { EvaluationSettings, EvaluationSummary, ExtractorSpec } from '../core/eval/settings';

/** Task queue of the workflow itself (any worker process can host it). */
export const CONTROL_TASK_QUEUE = 'ddpm-control';
/** Task queue of the training, dataset and sampling activities (trainer workers). */
export const TRAINER_TASK_QUEUE = 'ddpm-trainer';

export const WORKFLOW_TYPE = 'trainingRun';

/**
 * The worker-specific task queue of trainer slot `slot` in a pool: a data-parallel run places one training
 * activity per slot, and each trainer process (one per GPU, or per core on CPU) polls its slot's queue.
 */
export function slotTaskQueue(pool: string, slot: number): string {
  return `${pool}-slot-${slot}`;
}

// The run input's types are derived from its zod schema (one declaration); type-only, so no zod here.
export type {
  CarriedState,
  EvaluationPlan,
  ParallelSettings,
  RunSchedule,
  Timeouts,
  TrainingRunInput,
} from '../core/run-input';

export type RunPhase =
  'preparing' | 'training' | 'sampling' | 'evaluating' | 'paused' | 'completed' | 'cancelled' | 'failed';

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
  /** Set while paused or after failure (or while a data-parallel attempt is being repeated): why. */
  note: string | null;
  /** Data-parallel runs: the ring of the last completed segment (slots in rank order). */
  workers: { world: number | null; slots: number[]; attempts: number } | null;
  /** In-run evaluation: the latest numbers, the step being evaluated now, and why the last one failed. */
  evaluation?: RunEvaluationStatus;
}

export interface RunEvaluationStatus {
  latest: EvaluationSummary | null;
  /** Step of the checkpoint being evaluated now, if any. */
  running: number | null;
  /** Why the last evaluation failed (it is retried at the next interval), or which metrics were skipped. */
  note: string | null;
  /** The plots page in the store, once written. */
  plots: string | null;
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
  /** Key of the held-out split's manifest; null when the source declares none (absent in older results). */
  heldOutKey?: string | null;
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
  /** Set when this is one slot's share of a data-parallel segment. */
  parallel?: SlotAssignment;
}

/** One slot's part in a data-parallel segment attempt; rank and world size come from the rendezvous. */
export interface SlotAssignment {
  slot: number;
  /** Temporal run ID of the scheduling execution + attempt number: the rendezvous key within the run. */
  execution: string;
  attempt: number;
  /** Slots believed alive: the rendezvous closes as soon as these joined. */
  expectedSlots: number[];
  minWorkers: number;
  coordinator: string;
  rendezvousSeconds: number;
  /** Control-connection silence that marks a peer lost (at least the heartbeat timeout). */
  livenessSeconds: number;
  peerTimeoutSeconds: number;
  wire: 'fp32' | 'bf16';
}

/** A slot that arrived after its attempt's rendezvous closed: it trained nothing. */
export interface SlotNotAdmitted {
  admitted: false;
  slot: number;
  reason: string;
}

export interface TrainSegmentResult {
  admitted?: true;
  /** Data-parallel segments: this trainer's rank and the world size it trained with. */
  rank?: number;
  world?: number;
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

/**
 * The details of a cancelled segment (pause, cancel) from the trainer that writes the checkpoints: the
 * step it stopped at and the checkpoint that holds it, so the run reports where it really stopped.
 */
export interface SegmentStopped {
  step: number;
  checkpointKey: string;
}

/** What a trainer reports in each heartbeat (shown in the Temporal UI's pending activity). */
export interface SegmentHeartbeat {
  step: number;
  targetStep: number;
  loss: number | null;
  imagesPerSec: number | null;
  phase: 'loading' | 'joining' | 'training' | 'checkpointing';
  /** Data-parallel segments: who this is and where its step time goes (a straggler shows here). */
  rank?: number;
  world?: number;
  slot?: number;
  /** Last step: seconds computing gradients, and seconds in the all-reduce (of which waiting for peers). */
  computeSeconds?: number;
  allReduceSeconds?: number;
  waitSeconds?: number;
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

export interface EvaluateInput {
  runId: string;
  storeUri: string;
  /** The committed checkpoint whose EMA weights are evaluated. */
  checkpointKey: string;
  datasetKey: string;
  settings: EvaluationSettings;
  extractor?: ExtractorSpec;
  backend: TrainingRunInput['backend'];
}

export interface EvaluateResult extends EvaluationSummary {
  /** Keys of the regenerated plots (null when they could not be drawn: the metrics still count). */
  plots: { png: string; html: string } | null;
  seconds: number;
}

/** Error types the workflow must not retry: the same input would fail the same way (core/errors.ts). */
export const NON_RETRYABLE_ERRORS: string[] = [...NON_RETRYABLE_ERROR_TYPES];

/** A store that is down or unreachable: the run waits it out instead of spending its failure budget. */
export const STORE_UNAVAILABLE_ERROR = 'StoreUnavailableError';

/**
 * Error types of a data-parallel attempt that fail the attempt, not the run: the workflow restarts the
 * segment from the last checkpoint with the slots still alive (plus any replacement that joins).
 */
export const ATTEMPT_ERRORS = {
  /** A member was lost or timed out mid-segment. */
  peerLost: 'PeerLostError',
  peerTimeout: 'PeerTimeoutError',
  coordinatorLost: 'CoordinatorLostError',
  /** Fewer than minWorkers joined within the rendezvous window. */
  notEnoughWorkers: 'NotEnoughWorkersError',
  startStepMismatch: 'StartStepMismatchError',
  /** The coordinator refused this slot's credentials: that slot sits out; the others go on. */
  refused: 'CoordinatorRefusedError',
  unreachable: 'CoordinatorUnreachableError',
} as const;

// ---- search attributes (registered on the server by infra/local; see infra/README.md for clusters) ----

export const SEARCH_ATTRIBUTES = {
  preset: defineSearchAttributeKey('DdpmPreset', SearchAttributeType.KEYWORD),
  step: defineSearchAttributeKey('DdpmStep', SearchAttributeType.INT),
  loss: defineSearchAttributeKey('DdpmLoss', SearchAttributeType.DOUBLE),
  status: defineSearchAttributeKey('DdpmStatus', SearchAttributeType.KEYWORD),
  /**
   * Latest in-run evaluation: held-out bits/dim and the classifier FID (the built-in score). FID/KID stay
   * in the memo and status: SQL-backed visibility stores allow only three custom Double attributes.
   */
  bitsPerDim: defineSearchAttributeKey('DdpmBitsPerDim', SearchAttributeType.DOUBLE),
  classifierFid: defineSearchAttributeKey('DdpmClassifierFid', SearchAttributeType.DOUBLE),
};
