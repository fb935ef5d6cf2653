import { CheckpointRepository } from '../core/checkpoint/repository';
import { runKeys } from '../core/store-layout';
import { loadImageDataset } from '../core/data';
import type { RunConfig } from '../core/presets';
import { sampleGridKey, sampleGridPng } from '../core/sampling';
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
  let checkpointKey = resume?.key ?? '';
  let lastLoss = NaN;
  let metrics: string[] = [];
  const progress = progressLine('train', total, trainer.currentStep);

  const checkpoint = async () => {
    checkpointKey = (await repo.save(await trainer.hostState(), config, o.keepCheckpoints)).key;
    await store.put(runKeys.metrics(runId, trainer.currentStep), metrics.join(''));
    metrics = [];
  };
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

  try {
    let imagesSinceReport = 0;
    let secondsSinceReport = 0;
    while (trainer.currentStep < total) {
      const r = await trainer.step();
      lastLoss = r.loss;
      imagesSinceReport += r.images;
      secondsSinceReport += r.seconds;
      metrics.push(
        JSON.stringify({
          step: r.step,
          loss: r.loss,
          lr: r.learningRate,
          gradNorm: r.gradNorm,
          seconds: r.seconds,
        }) + '\n',
      );
      progress.update(r.step, { loss: r.loss, 'img/s': imagesSinceReport / secondsSinceReport });
      if (r.step % o.checkpointEvery === 0 || r.step === total) await checkpoint();
      if (r.step % o.sampleEvery === 0 || r.step === total) await sample();
    }
  } finally {
    progress.stop();
    trainer.dispose();
  }
  if (!checkpointKey)
    checkpointKey = (await repo.save(await trainer.hostState(), config, o.keepCheckpoints)).key;
  log(
    `done: step ${trainer.currentStep}, loss ${lastLoss.toFixed(4)}, checkpoint ${store.uri}/${checkpointKey}`,
  );
  if (sampleKeys.length > 0) log(`samples: ${store.uri}/${sampleKeys[sampleKeys.length - 1]}`);
  return { finalStep: trainer.currentStep, lastLoss, checkpointKey, sampleKeys };
}
