import { CheckpointRepository } from '../core/checkpoint/repository';
import { loadImageDataset } from '../core/data';
import type { RunConfig } from '../core/presets';
import { runKeys } from '../core/store-layout';
import { sampleGridKey, sampleGridPng } from '../core/sampling';
import { runSegment, type SegmentOutcome } from '../core/train/segment-runner';
import { Trainer } from '../core/train/trainer';
import type { ObjectStore } from '../store';
import { progressLine } from './progress';

export interface LocalRunOptions {
  config: RunConfig;
  runId: string;
  dataset: string;
  store: ObjectStore;
  microBatchSize?: number;
  checkpointEvery: number;
  sampleEvery: number;
  sampleCount: number;
  keepCheckpoints: number;
  log: (line: string) => void;
}

export interface LocalRunResult {
  finalStep: number;
  lastLoss: number;
  checkpointKey: string;
  sampleKeys: string[];
}

/**
 * One process, one worker: load the data, resume from the newest valid checkpoint if the run has one,
 * train to config.train.totalSteps with periodic checkpoints, EMA sample grids and metrics.
 */
export async function runLocal(o: LocalRunOptions): Promise<LocalRunResult> {
  const { config, store, runId, log } = o;
  const data = await loadImageDataset(o.dataset, { split: 'train' });
  log(`dataset: ${data.count} images ${data.height}x${data.width}x${data.channels} from ${data.source}`);

  const repo = new CheckpointRepository(store, runId);
  const resume = await repo.newestValid(config);
  for (const s of resume?.skipped ?? []) log(`checkpoint ${s.step} skipped: ${s.reason}`);
  if (resume) log(`resuming from ${store.uri}/${resume.key} (step ${resume.checkpoint.state.step})`);
  else log(`starting run ${runId} from the seed (${config.train.seed})`);
  await store.put(runKeys.config(runId), JSON.stringify(config, null, 2));

  const trainer = new Trainer({
    config,
    data,
    state: resume?.checkpoint.state,
    microBatchSize: o.microBatchSize,
  });
  const total = config.train.totalSteps;
  const sampleKeys: string[] = [];
  const progress = progressLine('train', total, trainer.currentStep);

  const sample = async () => {
    const step = trainer.currentStep;
    const key = sampleGridKey(runId, step);
    await store.put(
      key,
      await sampleGridPng(config, (await trainer.hostState()).ema, {
        count: o.sampleCount,
        sampler: { kind: 'ddim', steps: 50 },
      }),
    );
    sampleKeys.push(key);
    return key;
  };

  let outcome: SegmentOutcome;
  try {
    outcome = await runSegment({
      trainer,
      targetStep: total,
      checkpointEvery: o.checkpointEvery,
      startKey: resume?.key,
      writer: {
        putMetrics: (step, lines) => store.put(runKeys.metrics(runId, step), lines),
        saveCheckpoint: async (state) => (await repo.save(state, config, o.keepCheckpoints)).key,
      },
      onStep: (r, totals) =>
        progress.update(r.step, { loss: r.loss, 'img/s': totals.images / totals.seconds }),
      afterStep: async (r) => {
        if (r.step % o.sampleEvery === 0 || r.step === total) await sample();
      },
    });
  } finally {
    progress.stop();
    trainer.dispose();
  }
  const { step: finalStep, loss: lastLoss, checkpointKey } = outcome;
  log(`done: step ${finalStep}, loss ${lastLoss.toFixed(4)}, checkpoint ${store.uri}/${checkpointKey}`);
  if (sampleKeys.length > 0) log(`samples: ${store.uri}/${sampleKeys[sampleKeys.length - 1]}`);
  return { finalStep, lastLoss, checkpointKey, sampleKeys };
}
