import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { BACKEND_CHOICES } from '../core/backend/names';
import { METRIC_NAMES, type MetricName } from '../core/eval/settings';
import { RunConfigSchema } from '../core/presets';
import type { TrainingRunInput } from '../workflows/api';
import { RunIdSchema } from './options';

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
    presentSlots: z.array(z.number().int().min(0)).optional(),
    evaluation: EvaluationSummarySchema.nullable().optional(),
  })
  .strict();

const HostPortSchema = z.string().regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7077');

const ParallelSchema = z
  .object({
    workers: z.number().int().min(2, 'data-parallel runs need at least 2 workers'),
    minWorkers: positiveInt,
    pool: z.string().min(1),
    coordinator: HostPortSchema,
    rendezvousSeconds: positiveInt,
    peerTimeoutSeconds: positiveInt,
    wire: z.enum(['fp32', 'bf16']),
  })
  .strict()
  .refine((p) => p.minWorkers <= p.workers, {
    message: 'minWorkers must not exceed workers',
    path: ['minWorkers'],
  });

/** Where artifacts may go: workers on other machines must find the same place, so no relative paths. */
function isStoreUri(uri: string): boolean {
  return /^s3:\/\/[^/]+/.test(uri) || uri.startsWith('file:///') || path.isAbsolute(uri);
}

/** The workflow input as a whole, validated before anything starts (errors name the field). */
export const TrainingRunInputSchema = z
  .object({
    runId: RunIdSchema,
    storeUri: z
      .string()
      .refine(isStoreUri, 'expected s3://bucket/prefix, file:///absolute/dir or an absolute directory path'),
    dataset: z.string().min(1, 'expected a dataset path or s3:// URI'),
    config: RunConfigSchema,
    schedule: z
      .object({
        checkpointEvery: positiveInt,
        sampleEvery: positiveInt,
        sampleCount: positiveInt,
        sampleSteps: positiveInt,
        keepCheckpoints: positiveInt,
        segmentsPerExecution: positiveInt.optional(),
      })
      .strict(),
    timeouts: z
      .object({
        heartbeatSeconds: positiveInt,
        segmentHours: z.number().positive(),
      })
      .strict(),
    backend: z.enum(BACKEND_CHOICES),
    microBatchSize: positiveInt.optional(),
    parallel: ParallelSchema.optional(),
    evaluation: EvaluationPlanSchema.optional(),
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

// Compile-time guard: the schema and the workflow contract must not drift apart.
const _conforms: (parsed: z.infer<typeof TrainingRunInputSchema>) => TrainingRunInput = (parsed) => parsed;
void _conforms;

/** Validates a run input; the error names the first offending field, e.g. `schedule.checkpointEvery`. */
export function parseRunInput(value: unknown): TrainingRunInput {
  const parsed = TrainingRunInputSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid run input: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

/** A store option as the payload needs it: URIs untouched, local paths made absolute. */
export function absoluteStoreUri(store: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(store)) return store;
  return path.resolve(store);
}

/** Joins a store URI and an object key for display (`/abs/runs` + `run/latest`). */
export function objectUri(storeUri: string, key: string): string {
  return `${storeUri.replace(/\/+$/, '')}/${key}`;
}

/** commander parser for --run-id: the same rule as the workflow input, reported against the option. */
export function runIdOption(value: string): string {
  const parsed = RunIdSchema.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0].message);
  return parsed.data;
}
