import { ApplicationFailure, type RetryPolicy } from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import { ChunkPlan, planChunks } from '../core/sampling/chunks';
import { NON_RETRYABLE_ERRORS } from './api';
import {
  InpaintImageInput,
  InpaintImageResult,
  SampleImagesInput,
  SampleImagesProgress,
  SampleImagesResult,
  poolQueue,
  sampleImagesProgressQuery,
  sampleImagesWorkflowId,
} from './sampling-api';

/**
 * Failure policy, all in one place:
 * - A chunk retries without limit (backing off to a minute): a trainer that dies mid-chunk is replaced,
 *   and its chunk runs again on any trainer of the pool. Bad input (a missing checkpoint, a sampler the
 *   schedule cannot run) fails at once instead (NON_RETRYABLE_ERRORS).
 * - A chunk that stops heartbeating for `heartbeatSeconds` (default 120: one denoising step of a large
 *   batch on a slow CPU trainer stays well inside it) is presumed lost.
 * - 12 h is a bound, not an estimate: a chunk is at most 64 batches, and DDPM's 1000 steps of a large
 *   batch of the cifar10 U-Net on a CPU trainer can take hours.
 * - Committing a set reads at most 64 images and writes two objects: minutes at worst on a slow store.
 */
const retry: RetryPolicy = {
  initialInterval: '1s',
  backoffCoefficient: 2,
  maximumInterval: '1m',
  nonRetryableErrorTypes: NON_RETRYABLE_ERRORS,
};
const CHUNK_START_TO_CLOSE = '12h';
const DEFAULT_HEARTBEAT_SECONDS = 120;
const FINISH_START_TO_CLOSE = '30m';

function poolActivities(pool: string | undefined, heartbeatSeconds: number | undefined) {
  return wf.proxyActivities<typeof activities>({
    taskQueue: poolQueue(pool),
    startToCloseTimeout: CHUNK_START_TO_CLOSE,
    heartbeatTimeout: `${heartbeatSeconds ?? DEFAULT_HEARTBEAT_SECONDS}s`,
    retry,
  });
}

/**
 * Samples `count` images of one checkpoint on the trainer pool: the set is cut into chunks of whole
 * batches, one `sampleChunk` activity each, which any trainer polling the pool's queue may take; the
 * results are gathered by chunk index (never by completion order) and the set is committed with its
 * grid and manifest. The images equal those of the same request sampled in one process.
 */
export async function sampleImages(input: SampleImagesInput): Promise<SampleImagesResult> {
  let plan: ChunkPlan[];
  try {
    plan = planChunks(input.count, input.batch, input.chunkImages);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'InvalidInputError');
  }
  const { sampleChunk } = poolActivities(input.pool, input.heartbeatSeconds);
  const { finishSampleImages } = wf.proxyActivities<typeof activities>({
    taskQueue: poolQueue(input.pool),
    startToCloseTimeout: FINISH_START_TO_CLOSE,
    retry,
  });

  const progress: SampleImagesProgress = {
    count: input.count,
    chunks: plan.length,
    chunksDone: 0,
    imagesDone: 0,
  };
  wf.setHandler(sampleImagesProgressQuery, () => progress);

  const results = await Promise.all(
    plan.map(async (chunk) => {
      const r = await sampleChunk({ request: input, chunk });
      progress.chunksDone++;
      progress.imagesDone += chunk.count;
      return r;
    }),
  );
  const committed = await finishSampleImages({
    request: input,
    chunks: results.map((r) => r.record),
    preset: results[0].preset,
    shape: results[0].shape,
  });
  return { ...committed, reusedChunks: results.filter((r) => r.reused).length };
}

/**
 * For other workflows (an evaluation inside a training run): samples a set as a child workflow and
 * waits for it. The child ID is the parent's ID plus the set's, so a repeated request within the
 * parent attaches instead of sampling twice. A parent that continues as new must await this first
 * (the default parent-close policy terminates a running child).
 */
export async function sampleImagesAsChild(input: SampleImagesInput): Promise<SampleImagesResult> {
  return wf.executeChild(sampleImages, {
    workflowId: `${wf.workflowInfo().workflowId}/${sampleImagesWorkflowId(input)}`,
    args: [input],
  });
}

/** Inpaints one image on the trainer pool (the `inpaint` activity; its PNGs travel through the store). */
export async function inpaintImage(input: InpaintImageInput): Promise<InpaintImageResult> {
  const { inpaint } = poolActivities(input.pool, input.heartbeatSeconds);
  return inpaint(input);
}
