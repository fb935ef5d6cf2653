import { isCheckpointStep } from './checkpoint-schedule';
import type { TrainState } from './optimizer';
import type { StepResult, Trainer } from './trainer';

/** Where a segment's saves go. Metrics are always put before the checkpoint of the same step. */
export interface SegmentWriter {
  /** Stores the per-step metric lines (JSONL) of the steps since the last save, up to `step`. */
  putMetrics(step: number, jsonl: string): Promise<void>;
  /** Commits a checkpoint of `state`; returns its key. */
  saveCheckpoint(state: TrainState): Promise<string>;
}

/** Images and training seconds since the segment started. */
export interface SegmentTotals {
  images: number;
  seconds: number;
}

export interface SegmentRunOptions {
  trainer: Trainer;
  /** The step the segment stops at (it saves there). */
  targetStep: number;
  /** Saves also fall on every multiple of this. */
  checkpointEvery: number;
  writer: SegmentWriter;
  /** The checkpoint that holds the trainer's starting state, if any (reported until the first save). */
  startKey?: string;
  /** Wraps each save's writes, after the state is read back (what the caller shows or times meanwhile). */
  aroundSave?: (save: () => Promise<void>) => Promise<void>;
  /** Just before each optimizer step. */
  beforeStep?: () => void;
  /** After each step, before its save if it has one (progress, heartbeats). */
  onStep?: (r: StepResult, totals: SegmentTotals) => void;
  /** After each step and its save (sample grids, test hooks). */
  afterStep?: (r: StepResult) => Promise<void>;
  /**
   * Whether an error only interrupts the segment (cancellation, a lost peer): then the step reached is
   * checkpointed before the error goes on. Default: none is.
   */
  isInterruption?: (err: unknown) => boolean;
  /** Told before an interrupted segment checkpoints the step it reached. */
  onInterrupted?: (step: number, err: unknown) => void;
}

export interface SegmentOutcome {
  step: number;
  /** The last step's loss (NaN when no step ran). */
  loss: number;
  images: number;
  trainSeconds: number;
  /** The checkpoint holding `step` ('' when none was saved or given). */
  checkpointKey: string;
}

/**
 * The one training loop of every driver (`npm run train`, the Temporal activity): steps until
 * `targetStep`, collects a metric line per step, saves at checkpoint boundaries and at the target
 * (metrics first: a committed checkpoint always has the metrics up to its step beside it, and a crash in
 * between repeats these deterministic steps and rewrites them), and on an interruption checkpoints the
 * step reached before rethrowing.
 */
export async function runSegment(o: SegmentRunOptions): Promise<SegmentOutcome> {
  const { trainer, writer } = o;
  const aroundSave = o.aroundSave ?? ((save) => save());
  let savedStep = trainer.currentStep;
  let checkpointKey = o.startKey ?? '';
  let metricLines: string[] = [];
  const totals: SegmentTotals = { images: 0, seconds: 0 };
  let loss = NaN;

  const save = async () => {
    const state = await trainer.hostState();
    await aroundSave(async () => {
      if (metricLines.length > 0) {
        await writer.putMetrics(state.step, metricLines.join(''));
        metricLines = [];
      }
      checkpointKey = await writer.saveCheckpoint(state);
      savedStep = state.step;
    });
  };

  try {
    while (trainer.currentStep < o.targetStep) {
      o.beforeStep?.();
      const r = await trainer.step();
      totals.seconds += r.seconds;
      totals.images += r.images;
      loss = r.loss;
      metricLines.push(
        `${JSON.stringify({ step: r.step, loss: r.loss, lr: r.learningRate, gradNorm: r.gradNorm, seconds: r.seconds })}\n`,
      );
      o.onStep?.(r, totals);
      if (isCheckpointStep(r.step, o.checkpointEvery, o.targetStep)) await save();
      await o.afterStep?.(r);
    }
  } catch (err) {
    if (o.isInterruption?.(err) && trainer.currentStep > savedStep) {
      o.onInterrupted?.(trainer.currentStep, err);
      await save();
    }
    throw err;
  }
  if (savedStep !== trainer.currentStep) await save();
  return {
    step: trainer.currentStep,
    loss,
    images: totals.images,
    trainSeconds: totals.seconds,
    checkpointKey,
  };
}
