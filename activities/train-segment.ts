import { CancelledFailure, Context } from '@temporalio/activity';
import type { CheckpointManifest } from '../core/checkpoint/checkpoint';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { defaultMicroBatchSize } from '../core/train/micro-batch';
import { Trainer } from '../core/train/trainer';
import { CoordinatorError, Group } from '../coordinator/api';
import type {
  SegmentHeartbeat,
  SegmentStopped,
  SlotNotAdmitted,
  TrainSegmentInput,
  TrainSegmentResult,
} from '../workflows/api';
import { asAttemptFailure, groupReducer, joinSlotGroup } from './data-parallel';
import { checkpointFaultHook } from './fault-injection';
import { asActivityFailure } from './failures';
import { keepTrainedState, takeTrainedState } from './trained-state';
import {
  ensureBackend,
  loadPreparedDataset,
  log,
  storeFor,
  withHeartbeats,
  yieldToEventLoop,
} from './runtime';

/**
 * Trains from the run's newest valid checkpoint (or its seed) up to `targetStep`, checkpointing every
 * `checkpointEvery` steps and at the end. Heartbeats (step, loss, img/s) before every micro-batch, so a
 * dead trainer is noticed within the heartbeat timeout. On cancellation (pause, cancel, worker shutdown)
 * it checkpoints the last completed step before acknowledging.
 *
 * With `input.parallel` this is one slot's share of a data-parallel segment: it joins the attempt's group
 * through the coordinator (rank and world size come from there), computes gradients for its positions of
 * the global batch and all-reduces them over the ring, so every rank applies the same update. Rank 0
 * writes the checkpoints. A lost peer fails the attempt within seconds; rank 0 first checkpoints the last
 * step all ranks completed, so the restarted attempt loses nothing.
 */
export async function trainSegment(input: TrainSegmentInput): Promise<TrainSegmentResult | SlotNotAdmitted> {
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
  let group: Group | null = null;
  /** The checkpoint this writer last saved (or resumed from): where the run stands if it stops now. */
  let stopped: SegmentStopped | null = null;
  /** The step of the trainer's state that a checkpoint holds, with its checksums if known here. */
  let saved: { step: number; files?: CheckpointManifest['files'] } | null = null;
  try {
    const backend = await ensureBackend(input.backend);
    const data = await withHeartbeats(loadPreparedDataset(store, input.datasetKey), () => beat);
    // The store decides where to resume, as in any process; a state this process kept from its last
    // segment only saves reading back the checkpoint that holds exactly it.
    const kept = takeTrainedState(input.storeUri, input.runId);
    const resume = await withHeartbeats(repo.newestValid(input.config, kept?.standIn), () => beat);
    const skipped: string[] = [];
    for (const s of resume?.skipped ?? []) {
      skipped.push(`${s.step}: ${s.reason}`);
      log(`checkpoint ${s.step} skipped: ${s.reason}`);
    }
    const state = resume?.checkpoint.state;
    if (resume) {
      const inMemory = state === kept?.state ? ' (its state still in this process)' : '';
      log(`resuming from ${store.uri}/${resume.key}${inMemory}`);
      saved = { step: resume.checkpoint.state.step, files: resume.checkpoint.manifest.files };
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
    if (input.parallel) {
      const joined = await joinSlotGroup(input.parallel, input.runId, resumedFromStep, beat);
      if (!joined.admitted) {
        log(`slot ${input.parallel.slot} not admitted: ${joined.reason}`);
        return { admitted: false, slot: input.parallel.slot, reason: joined.reason };
      }
      group = joined.group;
      const member = group;
      // A cancellation that arrives while this rank waits in an all-reduce must not wait for the peers.
      ctx.cancellationSignal.addEventListener('abort', () => void member.close('cancelled'), { once: true });
      Object.assign(beat, { rank: group.rank, world: group.world });
      log(
        `rank ${group.rank} of ${group.world} (slots ${group.slots.join(',')}) from step ${resumedFromStep}`,
      );
    }
    // Every rank holds the same state after each all-reduced update: one writer is enough.
    const writesCheckpoints = group === null || group.rank === 0;
    let savedStep = resumedFromStep;
    let checkpointKey = state ? repo.keyFor(resumedFromStep) : '';
    if (writesCheckpoints && state) stopped = { step: resumedFromStep, checkpointKey };
    let saveSeconds = 0;
    const save = async (t: Trainer) => {
      const state = await t.hostState();
      if (!writesCheckpoints) {
        savedStep = state.step;
        checkpointKey = repo.keyFor(savedStep);
        saved = { step: savedStep };
        return;
      }
      const s0 = performance.now();
      beat.phase = 'checkpointing';
      ctx.heartbeat(beat);
      const written = await withHeartbeats(
        repo.save(state, input.config, input.keepCheckpoints, checkpointFaultHook(state.step)),
        () => beat,
      );
      checkpointKey = written.key;
      savedStep = state.step;
      stopped = { step: savedStep, checkpointKey };
      saved = { step: savedStep, files: written.manifest.files };
      saveSeconds += (performance.now() - s0) / 1000;
      beat.phase = 'training';
    };

    let stepStartedAt = performance.now();
    trainer = new Trainer({
      config: input.config,
      data,
      state,
      ...(group && {
        rank: group.rank,
        worldSize: group.world,
        reduce: groupReducer(
          group,
          beat,
          () => trainer?.currentStep ?? 0,
          () => stepStartedAt,
        ),
      }),
      microBatchSize: input.microBatchSize ?? defaultMicroBatchSize(backend.name, input.config),
      beforeMicroBatch: async () => {
        await yieldToEventLoop();
        ctx.heartbeat(beat);
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('segment cancelled');
      },
    });
    beat.step = trainer.currentStep;
    beat.phase = 'training';
    const setupSeconds = (performance.now() - startedAt) / 1000;
    let trainSeconds = 0;
    let images = 0;
    let loss = NaN;
    try {
      while (trainer.currentStep < targetStep) {
        stepStartedAt = performance.now();
        const r = await trainer.step();
        trainSeconds += r.seconds;
        images += r.images;
        loss = r.loss;
        Object.assign(beat, { step: r.step, loss: r.loss, imagesPerSec: images / trainSeconds });
        ctx.heartbeat(beat);
        if (r.step % every === 0 || r.step === targetStep) await save(trainer);
      }
    } catch (err) {
      // Cancelled (pause, cancel, shutdown) or a peer lost: keep the last step every rank completed.
      const interrupted = err instanceof CancelledFailure || (group !== null && isPeerFailure(err));
      if (interrupted && trainer.currentStep > savedStep) {
        log(`interrupted at step ${trainer.currentStep} (${errorText(err)}): checkpointing before stopping`);
        await save(trainer);
      }
      throw err;
    }
    if (savedStep !== trainer.currentStep) await save(trainer);
    await group?.close();
    group = null;
    return {
      admitted: true,
      ...(beat.rank !== undefined && { rank: beat.rank, world: beat.world }),
      step: trainer.currentStep,
      loss,
      imagesPerSec: trainSeconds > 0 ? images / trainSeconds : 0,
      checkpointKey,
      resumedFromStep,
      skippedCheckpoints: skipped,
      trainSeconds,
      overheadSeconds: setupSeconds + saveSeconds,
    };
  } catch (err) {
    if (ctx.cancellationSignal.aborted) {
      // Cancelled (pause, cancel, shutdown), or an all-reduce torn down by this trainer's own
      // cancellation: report the cancellation, with the checkpoint the run stopped at.
      throw new CancelledFailure('segment cancelled', stopped ? [stopped] : []);
    }
    throw asActivityFailure(asAttemptFailure(err));
  } finally {
    // Its state is final now: the next segment of this run here may use it for the checkpoint holding it.
    // (Saved at the current step, so the host copy is current and nothing is read from the device.)
    if (trainer && saved?.step === trainer.currentStep) {
      const { storeUri, runId } = input;
      const files = saved.files;
      const state = await trainer.hostState().catch(() => undefined);
      if (state) keepTrainedState({ storeUri, runId, state, files });
    }
    trainer?.dispose();
    // Leaving early (error, cancellation) tells the peers at once instead of letting them time out.
    await group?.close(ctx.cancellationSignal.aborted ? 'cancelled' : 'failed').catch(() => undefined);
  }
}

function isPeerFailure(err: unknown): boolean {
  return err instanceof CoordinatorError;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
