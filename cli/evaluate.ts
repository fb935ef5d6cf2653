/**
 * Evaluates a run's checkpoint (its EMA weights) in this process: held-out bits/dim, the built-in classifier
 * score and, with a feature extractor, FID and KID. Writes the metric lines and the plots into the run's store.
 *
 *   npm run evaluate -- --run-id ID [--checkpoint STEP] [--metrics bpd,fid,score] [--samples N] [--extractor PATH|s3://]
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { BACKEND_CHOICES, type BackendChoice } from '../core/backend/names';
import { evaluateCheckpoint, type EvalProgress, type MetricRecord } from '../core/eval/evaluate';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import {
  EVALUATION_DEFAULTS,
  METRIC_NAMES,
  type EvaluationSettings,
  type MetricName,
} from '../core/eval/settings';
import type { FeatureExtractor } from '../core/eval/feature-extractor';
import path from 'node:path';
import { isEmbeddedSource, parseShardManifest, prepareSplits } from '../core/data';
import { existsSync } from 'node:fs';
import { runKeys } from '../core/store-layout';
import { localCopyOf } from '../activities/runtime';
import { openStore } from '../store';
import { loadExtractor, refreshRunReports } from '../activities/evaluate';
import { UsageError, runCli } from '../common/errors';
import { nonNegativeInt, positiveInt } from '../common/options';
import { progressLine, type ProgressLine } from './progress';
import { absoluteDatasetSource, absoluteStoreUri, objectUri, runIdOption } from './run-input';

function metricList(value: string): MetricName[] {
  const names = value.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(METRIC_NAMES as readonly string[]).includes(n)) {
      throw new InvalidArgumentError(`unknown metric '${n}' (expected some of ${METRIC_NAMES.join(',')})`);
    }
  }
  return [...new Set(names)] as MetricName[];
}

function timestepsOption(value: string): number | 'all' {
  return value === 'all' ? 'all' : positiveInt(value);
}

const program = new Command('evaluate')
  .description(
    "Evaluate a run's checkpoint (its EMA weights), in this process: bits/dim on held-out images, the built-in " +
      "quality score (a classifier trained on the dataset's labels: classifier FID, share of confidently classified " +
      'samples, class histogram) and, with --extractor, FID and KID on Inception features. The metric lines and the ' +
      "plots go into the run's store.",
  )
  .requiredOption('--run-id <id>', 'the run to evaluate', runIdOption)
  .option('--store <uri>', "the run's store: a directory or s3://bucket/prefix", 'runs')
  .option('--checkpoint <step>', 'evaluate this step (default: the newest valid checkpoint)', nonNegativeInt)
  .option(
    '--metrics <list>',
    `comma-separated, of ${METRIC_NAMES.join(',')} (default: bpd,score, plus fid with --extractor)`,
    metricList,
  )
  .option(
    '--samples <n>',
    'generated images for the score and FID/KID (published FIDs use 50000)',
    positiveInt,
    EVALUATION_DEFAULTS.samples,
  )
  .addOption(
    new Option('--sampler <kind>', "'ddim' (few steps) or 'ancestral' (the paper's, one per timestep)")
      .choices(['ddim', 'ancestral'])
      .default('ddim'),
  )
  .option('--steps <n>', 'DDIM steps (ignored by ancestral)', positiveInt, 50)
  .option('--bpd-images <n>', 'held-out images for bits/dim', positiveInt, EVALUATION_DEFAULTS.bpdImages)
  .option(
    '--bpd-timesteps <k|all>',
    "KL timesteps per image (stratified, unbiased), or 'all' for the exact bound (T-1 model calls per image)",
    timestepsOption,
    EVALUATION_DEFAULTS.bpdTimesteps,
  )
  .option(
    '--seed <n>',
    "noise seed (default: derived from the run's seed; the same at every step)",
    nonNegativeInt,
  )
  .option(
    '--extractor <uri>',
    'TF.js Inception-v3 feature network: model.json path, its folder, or s3:// URI',
  )
  .option('--extractor-size <px>', 'input side of the feature network', positiveInt, 299)
  .addOption(
    new Option('--extractor-range <range>', 'pixel range the feature network expects')
      .choices(['-1..1', '0..1', '0..255'])
      .default('-1..1'),
  )
  .option('--extractor-output <node>', 'graph models with several outputs: the node to read')
  .option('--reference-images <n>', 'training images in the FID reference (default: all)', positiveInt)
  .option(
    '--dataset <source>',
    "the run's dataset source, for runs whose store holds no prepared dataset (e.g. trained with 'npm run train')",
  )
  .option('--batch <n>', 'images per model call', positiveInt, EVALUATION_DEFAULTS.batchSize)
  .addOption(new Option('--backend <name>', 'TF.js backend').choices(BACKEND_CHOICES).default('auto'))
  .option('--json', 'print the metric records as JSON lines instead of a summary')
  .addHelpText(
    'after',
    `
Examples:
  npm run evaluate -- --run-id digits-20250101-120000
  npm run evaluate -- --run-id cifar10-20250101-120000 --metrics fid --samples 10000 --extractor ./inception-v3/model.json

"classifier FID" is measured with the project's own small classifier: compare it between runs on the same
dataset, never with published FIDs. For FID, convert Inception-v3 once (README "Evaluation").
`,
  );

interface Options {
  runId: string;
  store: string;
  checkpoint?: number;
  metrics?: MetricName[];
  samples: number;
  sampler: 'ddim' | 'ancestral';
  steps: number;
  bpdImages: number;
  bpdTimesteps: number | 'all';
  seed?: number;
  extractor?: string;
  extractorSize: number;
  extractorRange: '-1..1' | '0..1' | '0..255';
  extractorOutput?: string;
  referenceImages?: number;
  dataset?: string;
  batch: number;
  backend: BackendChoice;
  json?: boolean;
}

const g = (x: number, digits = 4) => String(Number(x.toPrecision(digits)));

function describe(r: MetricRecord): string {
  const d = r.details as Record<string, unknown>;
  const sampled = r.sampler
    ? `${r.sampleCount} ${r.sampler}${r.sampler === 'ddim' ? `-${r.samplingSteps}` : ''} samples, seed ${r.seed}`
    : '';
  const v = r.value;
  switch (r.metric) {
    case 'bits_per_dim':
      return (
        `bits/dim: ${g(v as number)} ± ${g(r.stdErr ?? NaN, 2)} (${d.split} split, ${r.sampleCount} images, ` +
        `${d.estimator === 'exact' ? 'exact bound' : `${d.timestepsPerImage} of ${Number(d.totalTimesteps) - 1} KL timesteps per image, stratified`})` +
        (d.note ? ` — ${d.note}` : '')
      );
    case 'classifier_fid':
      return `classifier FID: ${g(v as number)} (built-in classifier, held-out accuracy ${g(100 * Number(d.classifierHeldOutAccuracy), 3)}%; ${sampled}; not an Inception FID)`;
    case 'classifier_confident_share':
      return `confidently classified (top class p >= ${d.threshold}): ${g(100 * (v as number), 3)}%`;
    case 'classifier_class_histogram':
      return `class histogram: ${(v as number[]).map((n, k) => `${k}:${n}`).join(' ')}`;
    case 'fid':
      return `FID: ${g(v as number)} (${d.extractorKind} ${d.extractor}, reference: ${d.referenceImages} training images; ${sampled})`;
    case 'kid':
      return `KID: ${g(v as number, 3)} ± ${g(r.stdErr ?? NaN, 2)} (${d.subsets} subsets of ${d.subsetSize})`;
  }
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const metrics =
    o.metrics ?? (o.extractor ? (['bpd', 'score', 'fid'] as MetricName[]) : EVALUATION_DEFAULTS.metrics);
  if (metrics.includes('fid') && !o.extractor) {
    throw new UsageError(
      '--metrics fid needs --extractor PATH|s3://... (a TF.js Inception-v3; see README "Evaluation")',
    );
  }
  const store = openStore(absoluteStoreUri(o.store));
  const repo = new CheckpointRepository(store, o.runId);
  let loaded;
  if (o.checkpoint !== undefined) {
    loaded = await repo.load(o.checkpoint);
  } else {
    const newest = await repo.newestValid();
    for (const s of newest?.skipped ?? []) log(`checkpoint ${s.step} skipped: ${s.reason}`);
    if (!newest) throw new Error(`run ${o.runId} has no valid checkpoint in ${store.uri}`);
    loaded = newest.checkpoint;
  }
  const { state, config } = loaded;
  const datasetKey = runKeys.datasetManifest(o.runId);
  const prepared = await store.tryGet(datasetKey);
  // Runs prepared by versions before held-out splits and labels were kept (the manifest has no `heldOut`)
  // get them from their recorded source (or --dataset), so they can be scored like new runs.
  const manifest = prepared ? parseShardManifest(prepared, `${store.uri}/${datasetKey}`) : null;
  const older = manifest !== null && manifest.heldOut === undefined;
  const upgradeFrom = o.dataset ?? (older && isReadableSource(manifest.source) ? manifest.source : undefined);
  if (older && !upgradeFrom) {
    log(
      `run ${o.runId}'s prepared dataset predates labels and held-out splits: pass --dataset with its source ` +
        'for the classifier score and held-out bits/dim',
    );
  }
  if (!prepared || (older && upgradeFrom)) {
    if (!upgradeFrom) {
      throw new UsageError(
        `run ${o.runId} has no prepared dataset in ${store.uri} (${datasetKey}): pass --dataset with its source`,
      );
    }
    log(`preparing ${upgradeFrom} into ${store.uri}/${datasetKey} (training and held-out splits)`);
    const source = absoluteDatasetSource(upgradeFrom);
    const local = await localCopyOf(source);
    try {
      await prepareSplits(
        store,
        { train: datasetKey, heldOut: runKeys.heldOutManifest(o.runId) },
        { uri: source, localPath: local.path },
      );
    } finally {
      await local.cleanup();
    }
  }
  if (typeof o.bpdTimesteps === 'number' && o.bpdTimesteps > config.diffusion.timesteps - 1) {
    throw new UsageError(`--bpd-timesteps: at most ${config.diffusion.timesteps - 1} for this run, or 'all'`);
  }
  log(
    `run ${o.runId}: checkpoint of step ${state.step} (preset ${config.preset}); metrics ${metrics.join(',')}`,
  );
  await initBackend(o.backend, log);
  const settings: EvaluationSettings = {
    ...EVALUATION_DEFAULTS,
    metrics,
    samples: o.samples,
    sampler: { kind: o.sampler, steps: o.steps },
    bpdImages: o.bpdImages,
    bpdTimesteps: o.bpdTimesteps,
    batchSize: o.batch,
    ...(o.seed !== undefined && { seed: o.seed }),
    ...(o.referenceImages !== undefined && { referenceImages: o.referenceImages }),
  };
  let extractor: FeatureExtractor | null = null;
  if (metrics.includes('fid') && o.extractor) {
    extractor = await loadExtractor({
      uri: o.extractor,
      inputSize: o.extractorSize,
      inputRange: o.extractorRange,
      ...(o.extractorOutput && { outputNode: o.extractorOutput }),
    });
    log(`feature extractor: ${extractor.kind} from ${extractor.where} (id ${extractor.id})`);
  }
  let progress: ProgressLine | undefined;
  let phase = '';
  const onProgress = (p: EvalProgress) => {
    if (p.phase !== phase) {
      progress?.stop();
      progress = progressLine('evaluate', p.total, 0, 15);
      phase = p.phase;
    }
    progress?.update(p.done, { phase: p.phase });
  };
  try {
    const result = await evaluateCheckpoint(
      store,
      {
        runId: o.runId,
        step: state.step,
        checkpointKey: repo.keyFor(state.step),
        config,
        ema: state.ema,
        datasetKey,
      },
      settings,
      extractor,
      onProgress,
    );
    progress?.stop();
    const plots = await refreshRunReports(store, o.runId, (line) => log(`warning: ${line}`));
    if (o.json) {
      for (const r of result.records) process.stdout.write(`${JSON.stringify(r)}\n`);
    } else {
      process.stdout.write(`step ${state.step}:\n`);
      for (const r of result.records) process.stdout.write(`  ${describe(r)}\n`);
      for (const s of result.summary.skipped) process.stdout.write(`  skipped ${s}\n`);
      process.stdout.write(`metrics: ${objectUri(store.uri, result.key)}\n`);
      if (plots) process.stdout.write(`plots:   ${objectUri(store.uri, plots.html)}\n`);
    }
  } finally {
    progress?.stop();
    extractor?.dispose();
  }
});

/** A recorded dataset source this process can read again without being told where it is. */
function isReadableSource(source: string): boolean {
  return isEmbeddedSource(source) || (path.isAbsolute(source) && existsSync(source));
}
