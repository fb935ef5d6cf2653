import { CancelledFailure, Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { CheckpointRepository } from '../core/checkpoint/repository';
import type { TrainState } from '../core/train/optimizer';
import { defaultMicroBatchSize } from '../core/train/micro-batch';
import { Trainer } from '../core/train/trainer';
import type { SegmentHeartbeat, TrainSegmentInput, TrainSegmentResult } from '../workflows/api';
import { checkpointFaultHook } from './fault-injection';
import {
  asNonRetryable,
  ensureBackend,
  loadPreparedDataset,
  log,
  storeFor,
  withHeartbeats,
  yieldToEventLoop,
} from './runtime';

/** The state this process saved last, so the next segment of the same run skips reloading it. */
let lastSaved: { runId: string; storeUri: string; state: TrainState } | null = null;

/**
 * Trains from the run's newest valid checkpoint (or its seed) up to `targetStep`, checkpointing every
 * `checkpointEvery` steps and at the end. Heartbeats (step, loss, img/s) before every micro-batch, so a
 * dead trainer is noticed within the heartbeat timeout. On cancellation (pause, cancel, worker shutdown)
 * it checkpoints the last completed step before acknowledging.
 */
export async function trainSegment(input: TrainSegmentInput): Promise<TrainSegmentResult> {
  const ctx = Context.current();
  const startedAt = performance.now();
  const beat: SegmentHeartbeat = {
    step: 0,
    targetStep: input.targetStep,
    loss: null,
    imagesPerSec: null,
    phase: 'loading',
  };
  ctx.heartbeat(beat);
  const store = storeFor(input.storeUri);
  const repo = new CheckpointRepository(store, input.runId);
  let trainer: Trainer | null = null;
  try {
    const backend = await ensureBackend(input.backend);
    const data = await withHeartbeats(loadPreparedDataset(store, input.datasetKey), () => beat);
    const steps = await withHeartbeats(repo.listSteps(), () => beat);
    let state: TrainState | undefined;
    const skipped: string[] = [];
    if (
      lastSaved?.runId === input.runId &&
      lastSaved.storeUri === input.storeUri &&
      steps[0] === lastSaved.state.step
    ) {
      state = lastSaved.state;
    } else if (steps.length > 0) {
      const resume = await withHeartbeats(repo.newestValid(input.config), () => beat);
      for (const s of resume?.skipped ?? []) {
        skipped.push(`${s.step}: ${s.reason}`);
        log(`checkpoint ${s.step} skipped: ${s.reason}`);
      }
      state = resume?.checkpoint.state;
      if (resume) log(`resuming from ${store.uri}/${resume.key}`);
    }
    const resumedFromStep = state?.step ?? 0;
    // A fresh execution of an older run (restarted after failure or cancel) may find the store ahead of
    // the step its workflow believes in: carry on to the next checkpoint boundary from there.
    const every = input.checkpointEvery;
    const targetStep =
      resumedFromStep < input.targetStep
        ? input.targetStep
        : Math.min(input.config.train.totalSteps, (Math.floor(resumedFromStep / every) + 1) * every);
    beat.targetStep = targetStep;
    let savedStep = resumedFromStep;
    let checkpointKey = steps.length > 0 ? repo.keyFor(resumedFromStep) : '';
    let saveSeconds = 0;
    const save = async (t: Trainer) => {
      const s0 = performance.now();
      beat.phase = 'checkpointing';
      ctx.heartbeat(beat);
      checkpointKey = await withHeartbeats(
        repo.save(t.state, input.config, input.keepCheckpoints, checkpointFaultHook(t.state.step)),
        () => beat,
      );
      savedStep = t.state.step;
      lastSaved = { runId: input.runId, storeUri: input.storeUri, state: t.state };
      saveSeconds += (performance.now() - s0) / 1000;
      beat.phase = 'training';
    };

    trainer = new Trainer({
      config: input.config,
      data,
      state,
      microBatchSize: input.microBatchSize ?? defaultMicroBatchSize(backend.name, input.config),
      beforeMicroBatch: async () => {
        await yieldToEventLoop();
        ctx.heartbeat(beat);
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('segment cancelled');
      },
    });
    beat.step = trainer.state.step;
    beat.phase = 'training';
    const setupSeconds = (performance.now() - startedAt) / 1000;
    let trainSeconds = 0;
    let images = 0;
    let loss = NaN;
    try {
      while (trainer.state.step < targetStep) {
        const r = await trainer.step();
        trainSeconds += r.seconds;
        images += r.images;
        loss = r.loss;
        Object.assign(beat, { step: r.step, loss: r.loss, imagesPerSec: images / trainSeconds });
        ctx.heartbeat(beat);
        if (r.step % every === 0 || r.step === targetStep) await save(trainer);
      }
    } catch (err) {
      if (err instanceof CancelledFailure && trainer.state.step > savedStep) {
        log(`cancelled at step ${trainer.state.step}: checkpointing before stopping`);
        await save(trainer);
      }
      throw err;
    }
    if (savedStep !== trainer.state.step) await save(trainer);
    return {
      step: trainer.state.step,
      loss,
      imagesPerSec: trainSeconds > 0 ? images / trainSeconds : 0,
      checkpointKey,
      resumedFromStep,
      skippedCheckpoints: skipped,
      trainSeconds,
      overheadSeconds: setupSeconds + saveSeconds,
    };
  } catch (err) {
    if (err instanceof Error && /^loss is (NaN|Infinity|-Infinity)/.test(err.message)) {
      throw ApplicationFailure.nonRetryable(err.message, 'TrainingDivergedError');
    }
    throw asNonRetryable(err);
  } finally {
    trainer?.dispose();
  }
}
