/**
 * The training-run workflow input: one zod schema, and the payload types derived from it (z.infer), so
 * the validation and the contract cannot drift apart. workflows/api.ts re-exports the types with
 * `export type` only, so nothing here (zod, node:path) reaches the workflow bundle.
 */
import path from 'node:path';
import { z } from 'zod';
import { BACKEND_CHOICES } from './backend/names';
import { METRIC_NAMES, type MetricName } from './eval/settings';
import { RunConfigSchema } from './presets';

export const RunIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'run IDs use letters, digits, ".", "_" and "-" (max 128)');

const positiveInt = z.number().int().positive();

const EvaluationSummarySchema = z
  .object({
    step: z.number().int().min(0),
    bitsPerDim: z.number().nullable(),
    bitsPerDimStdErr: z.number().nullable(),
    classifierFid: z.number().nullable(),
    confidentShare: z.number().nullable(),
    fid: z.number().nullable(),
    kid: z.number().nullable(),
    key: z.string(),
    skipped: z.array(z.string()),
  })
  .strict();

export const ExtractorSpecSchema = z
  .object({
    uri: z.string().min(1, 'expected a path or s3:// URI of a TF.js model.json'),
    inputSize: positiveInt.optional(),
    inputRange: z.enum(['-1..1', '0..1', '0..255']).optional(),
    outputNode: z.string().min(1).optional(),
  })
  .strict();

const EvaluationPlanSchema = z
  .object({
    /** Steps between evaluations (rounded up to a checkpoint), plus one at the end; 0 turns them off. */
    every: z.number().int().min(0).optional(),
    metrics: z
      .array(z.enum(METRIC_NAMES as [MetricName, ...MetricName[]]))
      .min(1)
      .optional(),
    samples: z.number().int().min(2).optional(),
    sampler: z
      .object({ kind: z.enum(['ancestral', 'ddim']), steps: positiveInt.optional() })
      .strict()
      .optional(),
    bpdImages: z.number().int().min(2).optional(),
    bpdTimesteps: z.union([positiveInt, z.literal('all')]).optional(),
    /** Needed for FID/KID: the feature network, from a path every trainer can read or an s3:// URI. */
    extractor: ExtractorSpecSchema.optional(),
  })
  .strict()
  .refine((p) => !p.metrics?.includes('fid') || p.extractor !== undefined, {
    message: 'FID needs a feature extractor (--extractor)',
    path: ['metrics'],
  });

const CarriedStateSchema = z
  .object({
    datasetKey: z.string().min(1),
    step: z.number().int().min(0),
    loss: z.number().nullable(),
    lastCheckpointKey: z.string().nullable(),
    lastSampleKey: z.string().nullable(),
    startedAt: z.string(),
    /** Data-parallel runs: the slots that answered last. */
    presentSlots: z.array(z.number().int().min(0)).optional(),
    /** The latest evaluation's numbers. */
    evaluation: EvaluationSummarySchema.nullable().optional(),
  })
  .strict();

const HostPortSchema = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7077');

const ParallelSchema = z
  .object({
    /** Trainer slots 0..workers-1, each polled by one trainer process (`trainer-worker --slot k`). */
    workers: z.number().int().min(2, 'data-parallel runs need at least 2 workers'),
    /** A segment attempt runs with whichever slots join, but never with fewer than this. */
    minWorkers: positiveInt,
    /** Task-queue prefix of the slots (default: the trainer queue): runs on separate pools do not compete. */
    pool: z.string().min(1),
    /** The coordinator's "host:port" (its key comes from each trainer's environment, never from here). */
    coordinator: HostPortSchema,
    /** How long a rendezvous waits for slots that have not joined before going ahead without them. */
    rendezvousSeconds: positiveInt,
    /** An all-reduce waits this long for a slower peer before failing the attempt (stragglers, hangs). */
    peerTimeoutSeconds: positiveInt,
    /** Gradient transfer precision. */
    wire: z.enum(['fp32', 'bf16']),
  })
  .strict()
  .refine((p) => p.minWorkers <= p.workers, {
    message: 'minWorkers must not exceed workers',
    path: ['minWorkers'],
  });

const RunScheduleSchema = z
  .object({
    /** Steps between checkpoints; a training segment ends at each. */
    checkpointEvery: positiveInt,
    /** Steps between EMA sample grids (a multiple of checkpointEvery is best). */
    sampleEvery: positiveInt,
    /** Images per sample grid. */
    sampleCount: positiveInt,
    /** DDIM steps for periodic sample grids. */
    sampleSteps: positiveInt,
    /** Checkpoints kept in the store (the one `latest` names is never deleted). */
    keepCheckpoints: positiveInt,
    /** Segments per workflow execution before it continues as new (keeps histories small); default 100. */
    segmentsPerExecution: positiveInt.optional(),
  })
  .strict();

const TimeoutsSchema = z
  .object({
    /** A trainer that stops heartbeating this long is presumed dead and its segment is retried. */
    heartbeatSeconds: positiveInt,
    /** Upper bound for one segment (all its steps). */
    segmentHours: z.number().positive(),
  })
  .strict();

/** Where artifacts may go: workers on other machines must find the same place, so no relative paths. */
function isStoreUri(uri: string): boolean {
  return /^s3:\/\/[^/]+/.test(uri) || uri.startsWith('file:///') || path.isAbsolute(uri);
}

/** The workflow input as a whole, validated before anything starts (errors name the field). */
export const TrainingRunInputSchema = z
  .object({
    runId: RunIdSchema,
    /** Where artifacts go: a local directory (absolute path or file://) or s3://bucket/prefix. */
    storeUri: z
      .string()
      .refine(isStoreUri, 'expected s3://bucket/prefix, file:///absolute/dir or an absolute directory path'),
    /** Dataset source: a local path or an s3:// URI; prepared into `<runId>/dataset/` once. */
    dataset: z.string().min(1, 'expected a dataset path or s3:// URI'),
    config: RunConfigSchema,
    schedule: RunScheduleSchema,
    timeouts: TimeoutsSchema,
    /** TF.js backend the trainers use ('auto' picks the fastest available on each worker). */
    backend: z.enum(BACKEND_CHOICES),
    /** Micro-batch override (memory); unset uses the backend's default. */
    microBatchSize: positiveInt.optional(),
    /** Data-parallel training over several trainer slots; unset: one trainer on the shared queue. */
    parallel: ParallelSchema.optional(),
    /** In-run evaluation; unset: the defaults (bits/dim and the classifier score, a few times and at the end). */
    evaluation: EvaluationPlanSchema.optional(),
    /** Set by the workflow itself when it continues as new. */
    carried: CarriedStateSchema.optional(),
  })
  .strict()
  .superRefine((input, ctx) => {
    if (input.parallel && input.parallel.workers > input.config.train.batchSize) {
      ctx.addIssue({
        code: 'custom',
        path: ['parallel', 'workers'],
        message: `every rank needs at least one image of the global batch (${input.config.train.batchSize})`,
      });
    }
    const T = input.config.diffusion.timesteps;
    const bpdTimesteps = input.evaluation?.bpdTimesteps;
    if (typeof bpdTimesteps === 'number' && bpdTimesteps > T - 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['evaluation', 'bpdTimesteps'],
        message: `at most the diffusion timesteps - 1 (${T - 1}), or 'all'`,
      });
    }
    const evalSteps = input.evaluation?.sampler?.steps;
    if (evalSteps !== undefined && evalSteps > T) {
      ctx.addIssue({
        code: 'custom',
        path: ['evaluation', 'sampler', 'steps'],
        message: `at most the diffusion timesteps (${T})`,
      });
    }
    if (input.schedule.sampleSteps > input.config.diffusion.timesteps) {
      ctx.addIssue({
        code: 'custom',
        path: ['schedule', 'sampleSteps'],
        message: `at most the diffusion timesteps (${input.config.diffusion.timesteps})`,
      });
    }
  });

export type TrainingRunInput = z.infer<typeof TrainingRunInputSchema>;
export type RunSchedule = z.infer<typeof RunScheduleSchema>;
export type Timeouts = z.infer<typeof TimeoutsSchema>;
export type ParallelSettings = z.infer<typeof ParallelSchema>;
/** How a run evaluates itself while it trains; every field has a default. */
export type EvaluationPlan = z.infer<typeof EvaluationPlanSchema>;
/** What a continued-as-new execution inherits from the previous one. */
export type CarriedState = z.infer<typeof CarriedStateSchema>;
