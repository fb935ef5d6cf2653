import { Context } from '@temporalio/activity';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { evaluateCheckpoint, type EvalProgress } from '../core/eval/evaluate';
import { EXTRACTOR_DEFAULTS, FeatureExtractor } from '../core/eval/feature-extractor';
import { regeneratePlots } from '../core/eval/plots';
import { writeTensorboardEvents } from '../core/eval/tensorboard';
import type { ExtractorSpec } from '../core/eval/settings';
import { modelFilesAt, type ObjectStore } from '../store';
import type { EvaluateInput, EvaluateResult } from '../workflows/api';
import { asActivityFailure } from './failures';
import { ensureBackend, log, storeFor, yieldToEventLoop } from './runtime';

/** Loads the feature network a run or command names (path or s3:// URI, with its options). */
export async function loadExtractor(spec: ExtractorSpec): Promise<FeatureExtractor> {
  const files = modelFilesAt(spec.uri);
  return FeatureExtractor.load(
    files.read,
    files.where,
    {
      inputSize: spec.inputSize ?? EXTRACTOR_DEFAULTS.inputSize,
      inputRange: spec.inputRange ?? EXTRACTOR_DEFAULTS.inputRange,
      ...(spec.outputNode && { outputNode: spec.outputNode }),
    },
    files.modelJson,
  );
}

/**
 * Plots (PNG + HTML) and TensorBoard event files from the run's history. Drawing is a convenience: a
 * failure here is logged and leaves the metrics, which are already stored, in place.
 */
export async function refreshRunReports(
  store: ObjectStore,
  runId: string,
  warn: (line: string) => void,
): Promise<{ png: string; html: string } | null> {
  try {
    const { png, html, history } = await regeneratePlots(store, runId);
    try {
      await writeTensorboardEvents(store, history);
    } catch (err) {
      warn(`TensorBoard event files not written: ${err instanceof Error ? err.message : String(err)}`);
    }
    return { png, html };
  } catch (err) {
    warn(`plots not regenerated: ${err instanceof Error ? err.message : String(err)}`);
    return null;
  }
}

/**
 * Evaluates a committed checkpoint's EMA weights (bits/dim, classifier score, FID/KID with an extractor),
 * stores the metric lines, regenerates the run's plots and returns the numbers. Heartbeats carry the
 * phase and its progress.
 */
export async function evaluate(input: EvaluateInput): Promise<EvaluateResult> {
  const ctx = Context.current();
  const started = performance.now();
  let beat: EvalProgress = { phase: 'loading', done: 0, total: 1 };
  ctx.heartbeat(beat);
  const timer = setInterval(() => ctx.heartbeat(beat), 2000);
  let extractor: FeatureExtractor | null = null;
  try {
    await ensureBackend(input.backend);
    const store = storeFor(input.storeUri);
    const repo = new CheckpointRepository(store, input.runId);
    const step = Number(input.checkpointKey.slice(input.checkpointKey.lastIndexOf('/') + 1));
    const { state, config } = await repo.load(step);
    if (input.settings.metrics.includes('fid') && input.extractor) {
      extractor = await loadExtractor(input.extractor);
    }
    const result = await evaluateCheckpoint(
      store,
      {
        runId: input.runId,
        step,
        checkpointKey: input.checkpointKey,
        config,
        ema: state.ema,
        datasetKey: input.datasetKey,
      },
      input.settings,
      extractor,
      async (p) => {
        beat = p;
        ctx.heartbeat(p);
        await yieldToEventLoop();
      },
    );
    for (const s of result.summary.skipped) log(`skipped ${s}`);
    beat = { phase: 'plots', done: 0, total: 1 };
    const plots = await refreshRunReports(store, input.runId, log);
    return { ...result.summary, plots, seconds: (performance.now() - started) / 1000 };
  } catch (err) {
    throw asActivityFailure(err);
  } finally {
    clearInterval(timer);
    extractor?.dispose();
  }
}
