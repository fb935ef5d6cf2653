import type { RetryPolicy } from '@temporalio/common';
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import {
  CarriedState,
  NON_RETRYABLE_ERRORS,
  RunStatus,
  SEARCH_ATTRIBUTES,
  TRAINER_TASK_QUEUE,
  TrainSegmentInput,
  TrainSegmentResult,
  TrainingRunInput,
  TrainingRunResult,
  pauseSignal,
  resumeSignal,
  statusQuery,
} from './api';
import { FailureBudget, FailurePolicy, innermostMessage } from './failure-budget';
import { ParallelProgress, allSlots, runParallelSegment, segmentStopped } from './parallel-segment';

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
    wf.upsertMemo({
      store: input.storeUri,
      checkpoint: status.lastCheckpointKey ? `${input.storeUri}/${status.lastCheckpointKey}` : null,
      samples: status.lastSampleKey ? `${input.storeUri}/${status.lastSampleKey}` : null,
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
      const targetStep = Math.min(total, (Math.floor(status.step / every) + 1) * every);
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
      segmentEnd = result.step;
      status.step = result.step;
      status.loss = result.loss;
      status.imagesPerSec = result.imagesPerSec;
      status.lastCheckpointKey = result.checkpointKey;
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
          },
        });
      }
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
