import type { RetryPolicy } from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import {
  IN_RUN_EVALUATION_DEFAULTS,
  type EvaluationSettings,
  type EvaluationSummary,
} from '../core/eval/settings';
import {
  CarriedState,
  EvaluateResult,
  NON_RETRYABLE_ERRORS,
  RunStatus,
  SEARCH_ATTRIBUTES,
  TRAINER_TASK_QUEUE,
  TrainSegmentInput,
  TrainSegmentResult,
  TrainingRunInput,
  TrainingRunResult,
  RunEvaluationStatus,
  pauseSignal,
  resumeSignal,
  statusQuery,
} from './api';
import { FailureBudget, FailurePolicy, innermostMessage } from './failure-budget';
import { ParallelProgress, allSlots, runParallelSegment, segmentStopped } from './parallel-segment';
import { nextCheckpointStep } from '../core/train/checkpoint-schedule';

/** Keeps each execution's history small: a fresh one carries on after this many segments. */
const DEFAULT_SEGMENTS_PER_EXECUTION = 100;

/**
 * Patch (docs/workflow-versioning.md): a paused or cancelled segment's checkpoint writer reports the step
 * it stopped at, and the run's status, search attributes and memo show that step and checkpoint instead
 * of the previous segment boundary. Histories recorded before it replay with the old behaviour.
 */
const STOPPED_STEP_PATCH = 'stopped-step-from-cancellation';

/*
 * Failure policy (a run lasts days to weeks; see workflows/failure-budget.ts):
 * - Input that can never work (NON_RETRYABLE_ERRORS: a bad dataset, a diverged loss, a micro-batch that
 *   does not fit, a checkpoint of another model) fails the run at once, with the cause in its status.
 * - Anything else gets ACTIVITY_ATTEMPTS quick attempts: enough for a hiccup, while a deterministic
 *   failure (a bug, an unreadable store, a corrupt object) fails the same way each time. It then spends
 * the run's failure budget: FAILURE_POLICY.budget failures in a row, with growing pauses, and the run fails
 *   with the last error instead of looping while it looks "running". A success refills the budget.
 * - A lost trainer (no heartbeat) and a store outage spend no budget: the run waits them out for as long
 *   as they last, saying so in its status. No trainer at all is not a failure either: a segment waits in
 *   its task queue until one polls.
 */
const ACTIVITY_ATTEMPTS = 4;
const FAILURE_POLICY: FailurePolicy = {
  budget: 3,
  attemptsPerActivity: ACTIVITY_ATTEMPTS,
  firstPauseSeconds: 10,
  maxPatiencePauseSeconds: 300,
};

const retry: RetryPolicy = {
  initialInterval: '1s',
  backoffCoefficient: 2,
  maximumInterval: '30s',
  maximumAttempts: ACTIVITY_ATTEMPTS,
  nonRetryableErrorTypes: NON_RETRYABLE_ERRORS,
};

/**
 * An evaluation gets one retry (a trainer lost mid-evaluation), then counts as failed: it is reported in
 * the status and tried again at the next interval on a newer checkpoint, and never fails the run.
 */
const evaluationRetry: RetryPolicy = { ...retry, maximumAttempts: 2 };
/** Evaluations sample hundreds of images and may train the quality classifier on first use: allow hours. */
const EVALUATION_TIMEOUT = '6h';
/**
 * In-run evaluations per run by default: half-way and at the end, as the sample grids. On a CPU one
 * costs about a minute (256 samples), which four would make a fifth of the quick start's digits run.
 */
const DEFAULT_EVALUATIONS_PER_RUN = 2;
/** Marks histories written by code that schedules in-run evaluations (older runs replay without them). */
export const EVALUATION_PATCH = 'in-run-evaluation';

/** Steps between in-run evaluations: the plan's, else about DEFAULT_EVALUATIONS_PER_RUN per run, on checkpoints. */
export function evaluationInterval(input: TrainingRunInput): number {
  const every = input.schedule.checkpointEvery;
  const planned = input.evaluation?.every;
  if (planned === 0) return 0;
  const raw = planned ?? Math.ceil(input.config.train.totalSteps / DEFAULT_EVALUATIONS_PER_RUN);
  return Math.max(every, Math.ceil(raw / every) * every);
}

function evaluationSettings(input: TrainingRunInput): EvaluationSettings {
  const plan = input.evaluation ?? {};
  return {
    ...IN_RUN_EVALUATION_DEFAULTS,
    // An extractor without a metric list means: FID too.
    ...(plan.metrics
      ? { metrics: plan.metrics }
      : plan.extractor && { metrics: [...IN_RUN_EVALUATION_DEFAULTS.metrics, 'fid' as const] }),
    ...(plan.samples !== undefined && { samples: plan.samples }),
    ...(plan.sampler && { sampler: plan.sampler }),
    ...(plan.bpdImages !== undefined && { bpdImages: plan.bpdImages }),
    ...(plan.bpdTimesteps !== undefined && { bpdTimesteps: plan.bpdTimesteps }),
  };
}

/**
 * One DDPM training run: prepare the dataset in the store, then train segment by segment (each ends in a
 * checkpoint), sample EMA grids at their interval, and publish progress to queries, search attributes
 * and memo. A lost trainer stops heartbeating and its segment is retried on another (or a restarted)
 * worker from the newest valid checkpoint; determinism makes the retried run equal to an uninterrupted one.
 */
export async function trainingRun(input: TrainingRunInput): Promise<TrainingRunResult> {
  const { config, schedule, timeouts } = input;
  const total = config.train.totalSteps;
  const carried: CarriedState | undefined = input.carried;
  const status: RunStatus = {
    runId: input.runId,
    preset: config.preset,
    phase: 'preparing',
    step: carried?.step ?? 0,
    totalSteps: total,
    loss: carried?.loss ?? null,
    imagesPerSec: null,
    lastCheckpointKey: carried?.lastCheckpointKey ?? null,
    lastSampleKey: carried?.lastSampleKey ?? null,
    storeUri: input.storeUri,
    note: null,
    workers: null,
  };
  const parallel: ParallelProgress | null = input.parallel
    ? {
        attempts: 0,
        present: carried?.presentSlots ?? allSlots(input.parallel),
        world: null,
        slots: [],
        note: null,
      }
    : null;

  // A data-parallel run's pool hosts its dataset and sampling activities too (its shared queue).
  const trainerQueue = input.parallel?.pool ?? TRAINER_TASK_QUEUE;
  const { prepareDataset, sampleGrid } = wf.proxyActivities<typeof activities>({
    taskQueue: trainerQueue,
    startToCloseTimeout: '2h',
    heartbeatTimeout: `${timeouts.heartbeatSeconds}s`,
    retry,
  });
  const { trainSegment } = wf.proxyActivities<typeof activities>({
    taskQueue: trainerQueue,
    startToCloseTimeout: `${timeouts.segmentHours}h`,
    heartbeatTimeout: `${timeouts.heartbeatSeconds}s`,
    retry,
    // A cancelled segment (pause, cancel) writes its checkpoint before the workflow moves on.
    cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
  const { evaluate } = wf.proxyActivities<typeof activities>({
    taskQueue: trainerQueue,
    startToCloseTimeout: EVALUATION_TIMEOUT,
    heartbeatTimeout: `${timeouts.heartbeatSeconds}s`,
    retry: evaluationRetry,
  });

  // In-run evaluation, beside training: at most one runs; a newer checkpoint replaces one still waiting.
  const evaluates = wf.patched(EVALUATION_PATCH);
  const evaluationEvery = evaluates ? evaluationInterval(input) : 0;
  const evaluation: RunEvaluationStatus = {
    latest: carried?.evaluation ?? null,
    running: null,
    note: null,
    plots: null,
  };
  if (evaluates) status.evaluation = evaluation;
  let evaluationWaiting: { checkpointKey: string; step: number } | null = null;
  let evaluationLoop: Promise<void> | null = null;
  let datasetKeyForEvaluation = carried?.datasetKey ?? '';
  const evaluateOne = async (target: { checkpointKey: string; step: number }) => {
    evaluation.running = target.step;
    try {
      const r = (await evaluate({
        runId: input.runId,
        storeUri: input.storeUri,
        checkpointKey: target.checkpointKey,
        datasetKey: datasetKeyForEvaluation,
        settings: evaluationSettings(input),
        ...(input.evaluation?.extractor && { extractor: input.evaluation.extractor }),
        backend: input.backend,
      })) as EvaluateResult;
      const { plots, seconds: _seconds, ...summary } = r;
      evaluation.latest = summary as EvaluationSummary;
      evaluation.note = r.skipped.length > 0 ? `skipped ${r.skipped.join('; ')}` : null;
      if (plots) evaluation.plots = plots.html;
    } catch (err) {
      if (wf.isCancellation(err)) throw err;
      evaluation.note =
        `evaluation of step ${target.step} failed (tried again at the next interval): ` +
        (err instanceof Error ? innermost(err) : String(err));
    } finally {
      evaluation.running = null;
    }
    publish();
  };
  const requestEvaluation = (target: { checkpointKey: string; step: number }) => {
    evaluationWaiting = target;
    evaluationLoop ??= (async () => {
      try {
        while (evaluationWaiting) {
          const next: { checkpointKey: string; step: number } = evaluationWaiting;
          evaluationWaiting = null;
          await evaluateOne(next);
        }
      } finally {
        evaluationLoop = null;
      }
    })();
    // Cancellation reaches the run through its own await; this promise must not reject unobserved.
    evaluationLoop.catch(() => undefined);
  };
  const evaluationsDone = async () => {
    while (evaluationLoop) await evaluationLoop;
  };

  let paused = false;
  let segmentScope: wf.CancellationScope | undefined;
  const failures = new FailureBudget(FAILURE_POLICY, (note) => {
    status.note = note;
  });
  wf.setHandler(statusQuery, () => {
    if (parallel) {
      status.workers = { world: parallel.world, slots: parallel.slots, attempts: parallel.attempts };
      if (status.phase === 'training') status.note = parallel.note;
    }
    return status;
  });
  wf.setHandler(pauseSignal, () => {
    paused = true;
    segmentScope?.cancel();
  });
  wf.setHandler(resumeSignal, () => {
    paused = false;
  });

  const publish = () => {
    wf.upsertSearchAttributes([
      { key: SEARCH_ATTRIBUTES.preset, value: config.preset },
      { key: SEARCH_ATTRIBUTES.step, value: status.step },
      { key: SEARCH_ATTRIBUTES.status, value: status.phase },
      ...(status.loss !== null && Number.isFinite(status.loss)
        ? [{ key: SEARCH_ATTRIBUTES.loss, value: status.loss }]
        : []),
    ]);
    const latest = status.evaluation?.latest;
    if (latest) {
      wf.upsertSearchAttributes([
        ...(latest.bitsPerDim !== null
          ? [{ key: SEARCH_ATTRIBUTES.bitsPerDim, value: latest.bitsPerDim }]
          : []),
        ...(latest.classifierFid !== null
          ? [{ key: SEARCH_ATTRIBUTES.classifierFid, value: latest.classifierFid }]
          : []),
      ]);
    }
    wf.upsertMemo({
      store: input.storeUri,
      checkpoint: status.lastCheckpointKey ? `${input.storeUri}/${status.lastCheckpointKey}` : null,
      samples: status.lastSampleKey ? `${input.storeUri}/${status.lastSampleKey}` : null,
      ...(status.evaluation && {
        evaluation: status.evaluation.latest,
        plots: status.evaluation.plots ? `${input.storeUri}/${status.evaluation.plots}` : null,
      }),
    });
  };

  try {
    publish();
    const datasetKey =
      carried?.datasetKey ??
      (
        await failures.run('preparing the dataset', () =>
          prepareDataset({ runId: input.runId, storeUri: input.storeUri, dataset: input.dataset }),
        )
      ).datasetKey;
    datasetKeyForEvaluation = datasetKey;
    const startedAt = carried?.startedAt ?? new Date(wf.workflowInfo().startTime).toISOString();
    let segments = 0;
    // Where the last completed segment ended: sample grids are due by segment ends, even when a pause
    // moved status.step to a step inside a segment.
    let segmentEnd = status.step;
    while (status.step < total) {
      if (paused) {
        status.phase = 'paused';
        status.note = `paused at step ${status.step}; signal 'resume' to continue`;
        publish();
        await wf.condition(() => !paused);
        status.note = null;
      }
      status.phase = 'training';
      publish();
      const every = input.schedule.checkpointEvery;
      const targetStep = nextCheckpointStep(status.step, every, total);
      const segment: TrainSegmentInput = {
        runId: input.runId,
        storeUri: input.storeUri,
        datasetKey,
        config,
        targetStep,
        checkpointEvery: every,
        keepCheckpoints: schedule.keepCheckpoints,
        backend: input.backend,
        microBatchSize: input.microBatchSize,
      };
      let result: TrainSegmentResult;
      segmentScope = new wf.CancellationScope();
      try {
        result = await segmentScope.run(() =>
          failures.run(`the segment to step ${targetStep}`, async () =>
            input.parallel && parallel
              ? runParallelSegment({
                  settings: input.parallel,
                  segment,
                  heartbeatSeconds: timeouts.heartbeatSeconds,
                  segmentHours: timeouts.segmentHours,
                  progress: parallel,
                })
              : ((await trainSegment(segment)) as TrainSegmentResult),
          ),
        );
      } catch (err) {
        if (wf.isCancellation(err) && wf.patched(STOPPED_STEP_PATCH)) {
          const stopped = segmentStopped(err);
          if (stopped && stopped.step > status.step) {
            status.step = stopped.step;
            status.lastCheckpointKey = stopped.checkpointKey;
          }
        }
        // Paused mid-segment: the trainer checkpointed before acknowledging; pick up from there.
        if (paused && wf.isCancellation(err)) continue;
        throw err;
      } finally {
        segmentScope = undefined;
      }
      const sampleDue =
        Math.floor(result.step / schedule.sampleEvery) > Math.floor(segmentEnd / schedule.sampleEvery) ||
        result.step === total;
      const evaluationDue =
        evaluationEvery > 0 &&
        (Math.floor(result.step / evaluationEvery) > Math.floor(segmentEnd / evaluationEvery) ||
          result.step === total);
      segmentEnd = result.step;
      status.step = result.step;
      status.loss = result.loss;
      status.imagesPerSec = result.imagesPerSec;
      status.lastCheckpointKey = result.checkpointKey;
      if (evaluationDue) requestEvaluation({ checkpointKey: result.checkpointKey, step: result.step });
      if (sampleDue) {
        status.phase = 'sampling';
        publish();
        const checkpointKey = result.checkpointKey;
        const grid = await failures.run(`sampling step ${result.step}`, () =>
          sampleGrid({
            runId: input.runId,
            storeUri: input.storeUri,
            checkpointKey,
            count: schedule.sampleCount,
            sampler: { kind: 'ddim', steps: schedule.sampleSteps },
            backend: input.backend,
          }),
        );
        status.lastSampleKey = grid.key;
      }
      segments++;
      const perExecution = schedule.segmentsPerExecution ?? DEFAULT_SEGMENTS_PER_EXECUTION;
      if (status.step < total && (segments >= perExecution || wf.workflowInfo().continueAsNewSuggested)) {
        await evaluationsDone();
        publish();
        await wf.continueAsNew<typeof trainingRun>({
          ...input,
          carried: {
            datasetKey,
            step: status.step,
            loss: status.loss,
            lastCheckpointKey: status.lastCheckpointKey,
            lastSampleKey: status.lastSampleKey,
            startedAt,
            ...(parallel && { presentSlots: parallel.present }),
            ...(evaluates && { evaluation: evaluation.latest }),
          },
        });
      }
    }
    if (evaluationLoop) {
      status.phase = 'evaluating';
      publish();
      await evaluationsDone();
    }
    status.phase = 'completed';
    publish();
    return {
      runId: input.runId,
      finalStep: status.step,
      loss: status.loss,
      checkpointKey: status.lastCheckpointKey,
      sampleKey: status.lastSampleKey,
    };
  } catch (err) {
    if (wf.isCancellation(err)) {
      await wf.CancellationScope.nonCancellable(async () => {
        status.phase = 'cancelled';
        publish();
      });
    } else if (!(err instanceof wf.ContinueAsNew)) {
      status.phase = 'failed';
      status.note = innermostMessage(err);
      publish();
    }
    throw err;
  }
}

/** Temporal wraps an activity's own message in causes (ActivityFailure -> ApplicationFailure). */
function innermost(err: Error): string {
  let e: Error = err;
  while (e.cause instanceof Error) e = e.cause;
  return e.message;
}
