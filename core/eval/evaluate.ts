import { createHash } from 'node:crypto';
import * as tfl from '@tensorflow/tfjs-layers';
import { datasetFingerprint, readShardedSplit, type ShardManifest, type ShardedImages } from '../data';
import type { RunConfig } from '../presets';
import { Purpose, Rng, hashKey } from '../rng';
import { runKeys, sharedKeys, siblingKey } from '../store-layout';
import { epsModelFromWeights, generateImages } from '../sampling';
import { noiseScheduleFor } from '../diffusion/schedule';
import { bitsPerDim } from './bits-per-dim';
import {
  CLASSIFIER_DEFAULTS,
  QualityClassifier,
  summarizePredictions,
  trainClassifier,
  type ClassifierInfo,
  type LabelledImages,
} from './classifier';
import type { FeatureExtractor } from './feature-extractor';
import { frechetDistance, gaussianStats, type FeatureMatrix } from './frechet';
import { kernelInceptionDistance } from './kid';
import { modelReader, modelWriter } from './model-io';
import { cachedReferenceStats, type StatsObjects } from './reference-stats';
import type { EvaluationSettings, EvaluationSummary } from './settings';

/**
 * One evaluation of a checkpoint's EMA weights: held-out bits/dim, the built-in classifier score
 * (classifier FID, confident share, class histogram) and, with a user-supplied feature network, FID and
 * KID. Each metric becomes one JSON line in `<run>/metrics/eval/<step>-<id>.jsonl` carrying the checkpoint
 * step, sampler, sampling steps, sample count and seed.
 */
/** Share counted as confidently classified: top-class probability at least this. */
export const CONFIDENCE_THRESHOLD = 0.9;

export type MetricId =
  | 'bits_per_dim'
  | 'fid'
  | 'kid'
  | 'classifier_fid'
  | 'classifier_confident_share'
  | 'classifier_class_histogram';

/** One line of `<run>/metrics/eval/*.jsonl`. */
export interface MetricRecord {
  metric: MetricId;
  value: number | number[];
  stdErr?: number;
  step: number;
  checkpoint: string;
  /** Null for bits/dim, which scores held-out images and samples nothing. */
  sampler: 'ancestral' | 'ddim' | null;
  samplingSteps: number | null;
  /** Generated samples (or, for bits/dim, held-out images) the number is computed from. */
  sampleCount: number;
  seed: number;
  details: Record<string, unknown>;
  evaluatedAt: string;
}

export interface EvaluationTarget {
  runId: string;
  step: number;
  checkpointKey: string;
  config: RunConfig;
  ema: Float32Array;
  datasetKey: string;
}

export interface EvalObjects extends StatsObjects {
  list(prefix: string): Promise<string[]>;
}

export interface EvalProgress {
  phase: string;
  done: number;
  total: number;
}

export interface EvaluationResult {
  key: string;
  records: MetricRecord[];
  summary: EvaluationSummary;
  classifier: ClassifierInfo | null;
}

export function evaluationSeed(config: RunConfig, settings: Pick<EvaluationSettings, 'seed'>): number {
  return settings.seed ?? hashKey([config.train.seed, Purpose.Evaluation]);
}

/** Tells evaluations of one checkpoint with different settings apart; equal settings overwrite (retries). */
export function evaluationId(settings: EvaluationSettings, seed: number, extractorId: string | null): string {
  const identity = JSON.stringify({ ...settings, metrics: [...settings.metrics].sort(), seed, extractorId });
  return createHash('sha256').update(identity).digest('hex').slice(0, 10);
}

interface Splits {
  manifest: ShardManifest;
  fingerprint: string;
  train: () => Promise<ShardedImages>;
  heldOut: ShardedImages | null;
  heldOutNote: string | null;
}

async function loadSplits(store: EvalObjects, datasetKey: string): Promise<Splits> {
  const training = readShardedSplit(store, datasetKey);
  const { manifest } = await training;
  let heldOut: ShardedImages | null = null;
  let heldOutNote: string | null = null;
  if (typeof manifest.heldOut === 'string') {
    heldOut = (await readShardedSplit(store, siblingKey(datasetKey, manifest.heldOut))).images;
  } else if (manifest.heldOut === null) {
    heldOutNote = `the dataset source (${manifest.source}) declares no held-out split`;
  } else {
    heldOutNote = 'the dataset was prepared before held-out splits were kept';
  }
  return {
    manifest,
    fingerprint: datasetFingerprint(manifest),
    train: async () => (await training).images,
    heldOut,
    heldOutNote,
  };
}

function subset(
  images: ShardedImages,
  count: number,
  seedKey: number,
): ShardedImages & { indices: Int32Array } {
  const n = Math.min(count, images.count);
  const order = new Rng([seedKey, Purpose.Evaluation, 1]).permutation(images.count).subarray(0, n);
  const indices = Int32Array.from(order).sort();
  const per = images.height * images.width * images.channels;
  const pixels = new Uint8Array(n * per);
  indices.forEach((idx, i) => pixels.set(images.pixels.subarray(idx * per, (idx + 1) * per), i * per));
  const labels = images.labels ? Uint8Array.from(indices, (idx) => images.labels![idx]) : undefined;
  return { ...images, count: n, pixels, indices, ...(labels && { labels }) };
}

const withLabels = (images: ShardedImages): LabelledImages | null =>
  images.labels ? { ...images, labels: images.labels } : null;

/** The dataset's quality classifier from the store, trained (deterministically) and stored on first use. */
async function ensureClassifier(
  store: EvalObjects,
  splits: Splits,
  progress: (p: EvalProgress) => Promise<void> | void,
): Promise<{ classifier: QualityClassifier; info: ClassifierInfo }> {
  const prefix = sharedKeys.classifier(splits.fingerprint);
  const infoBytes = await store.tryGet(`${prefix}info.json`);
  if (infoBytes) {
    const info = JSON.parse(Buffer.from(infoBytes).toString('utf8')) as ClassifierInfo;
    const model = await tfl.loadLayersModel(
      modelReader((name) => store.get(`${prefix}${name}`), `${store.uri}/${prefix}`),
    );
    return { classifier: new QualityClassifier(model), info };
  }
  const train = withLabels(await splits.train());
  if (!train) throw new SkipMetric('the dataset has no labels to train the quality classifier on');
  const heldOut = splits.heldOut && withLabels(splits.heldOut);
  const { model, info } = await trainClassifier(train, heldOut, CLASSIFIER_DEFAULTS, (p) =>
    progress({
      phase: 'training the quality classifier',
      done: p.epoch * p.batches + p.batch,
      total: CLASSIFIER_DEFAULTS.epochs * p.batches,
    }),
  );
  await model.model.save(modelWriter((name, bytes) => store.put(`${prefix}${name}`, bytes)));
  await store.put(`${prefix}info.json`, JSON.stringify(info, null, 2));
  return { classifier: model, info };
}

/** A metric that cannot be computed for this run (no labels, no extractor): reported, not fatal. */
export class SkipMetric extends Error {}

export async function evaluateCheckpoint(
  store: EvalObjects,
  target: EvaluationTarget,
  settings: EvaluationSettings,
  extractor: FeatureExtractor | null,
  progress: (p: EvalProgress) => Promise<void> | void = () => undefined,
): Promise<EvaluationResult> {
  const seed = evaluationSeed(target.config, settings);
  const splits = await loadSplits(store, target.datasetKey);
  const records: MetricRecord[] = [];
  const skipped: string[] = [];
  const common = {
    step: target.step,
    checkpoint: target.checkpointKey,
    seed,
  };
  const now = () => new Date().toISOString();
  const sampling = {
    sampler: settings.sampler.kind,
    samplingSteps:
      settings.sampler.kind === 'ddim' ? (settings.sampler.steps ?? 50) : target.config.diffusion.timesteps,
    sampleCount: settings.samples,
  };
  let classifierInfo: ClassifierInfo | null = null;
  const labelled = splits.manifest.labels !== undefined;

  if (settings.metrics.includes('bpd')) {
    const source = splits.heldOut ?? (await splits.train());
    const split = splits.heldOut ? 'test' : 'train';
    const images = subset(source, settings.bpdImages, 0);
    const schedule = noiseScheduleFor(target.config.diffusion);
    const { model, dispose } = epsModelFromWeights(target.config, target.ema);
    try {
      const started = performance.now();
      const r = await bitsPerDim(schedule, model, images, {
        timestepsPerImage: settings.bpdTimesteps,
        seed,
        batchSize: settings.batchSize,
        varianceType: target.config.diffusion.variance,
        onProgress: (done, total) => progress({ phase: 'bits/dim', done, total }),
      });
      records.push({
        metric: 'bits_per_dim',
        value: r.bpd,
        stdErr: r.stdErr,
        ...common,
        sampler: null,
        samplingSteps: null,
        sampleCount: r.images,
        details: {
          split,
          ...(splits.heldOutNote && { note: `bits/dim on training images: ${splits.heldOutNote}` }),
          estimator: r.estimator,
          timestepsPerImage: r.timestepsPerImage,
          totalTimesteps: schedule.numTimesteps,
          priorBpd: r.priorBpd,
          decoderBpd: r.decoderBpd,
          klBpd: r.klBpd,
          seconds: (performance.now() - started) / 1000,
        },
        evaluatedAt: now(),
      });
    } finally {
      dispose();
    }
  }

  const wantScore = settings.metrics.includes('score') && labelled;
  if (settings.metrics.includes('score') && !labelled) {
    skipped.push('score: the dataset has no labels to train the quality classifier on');
  }
  const wantFid = settings.metrics.includes('fid');
  if (wantFid && !extractor) {
    skipped.push('fid: no feature extractor given (--extractor PATH|s3://...; see README "Evaluation")');
  }
  if (wantScore || (wantFid && extractor)) {
    const { imageSize: s, inChannels: c } = target.config.model;
    const pixels = await generateImages(target.config, target.ema, {
      count: settings.samples,
      seed,
      sampler: settings.sampler,
      batchSize: settings.batchSize,
      onProgress: (p) => progress({ phase: 'sampling', done: p.imagesDone, total: p.imagesTotal }),
    });
    const samples = { pixels, count: settings.samples, height: s, width: s, channels: c };

    if (wantScore) {
      try {
        const { classifier, info } = await ensureClassifier(store, splits, progress);
        classifierInfo = info;
        try {
          const referenceSplit = splits.heldOut ? 'test' : 'train';
          const reference = await cachedReferenceStats(
            store,
            `${sharedKeys.classifier(splits.fingerprint)}reference-${referenceSplit}/`,
            { split: referenceSplit, images: splits.heldOut?.count ?? splits.manifest.count },
            async () => (await classifier.run(splits.heldOut ?? (await splits.train()))).features,
          );
          progress({ phase: 'classifier score', done: 0, total: 1 });
          const { features, probs } = await classifier.run(samples);
          const fid = await frechetDistance(reference.stats, await statsOf(features), reference.sqrtCov);
          const summary = summarizePredictions(probs, classifier.classes, CONFIDENCE_THRESHOLD);
          const details = {
            classifier: `${sharedKeys.classifier(splits.fingerprint)}model.json`,
            classifierHeldOutAccuracy: info.heldOutAccuracy,
            featureDim: classifier.featureDim,
            referenceSplit,
            referenceImages: reference.stats.count,
          };
          records.push(
            {
              metric: 'classifier_fid',
              value: fid.distance,
              ...common,
              ...sampling,
              details,
              evaluatedAt: now(),
            },
            {
              metric: 'classifier_confident_share',
              value: summary.confidentShare,
              ...common,
              ...sampling,
              details: { ...details, threshold: summary.threshold },
              evaluatedAt: now(),
            },
            {
              metric: 'classifier_class_histogram',
              value: summary.histogram,
              ...common,
              ...sampling,
              details,
              evaluatedAt: now(),
            },
          );
        } finally {
          classifier.dispose();
        }
      } catch (err) {
        if (!(err instanceof SkipMetric)) throw err;
        skipped.push(`score: ${err.message}`);
      }
    }

    if (wantFid && extractor) {
      const referenceImages = settings.referenceImages;
      const reference = await cachedReferenceStats(
        store,
        sharedKeys.referenceStats(
          splits.fingerprint,
          extractor.id,
          `train${referenceImages ? `-${referenceImages}` : ''}`,
        ),
        { split: 'train', images: referenceImages ?? splits.manifest.count },
        async () => {
          const train = await splits.train();
          const images = referenceImages ? subset(train, referenceImages, 0) : train;
          return extractor.extract(images, settings.batchSize, (done, total) =>
            progress({ phase: 'reference features', done, total }),
          );
        },
      );
      const features = await extractor.extract(samples, settings.batchSize, (done, total) =>
        progress({ phase: 'sample features', done, total }),
      );
      progress({ phase: 'FID', done: 0, total: 1 });
      const fid = await frechetDistance(reference.stats, await statsOf(features), reference.sqrtCov);
      const kid = await kernelInceptionDistance(reference.features, features, {
        seed,
        subsets: settings.kidSubsets,
        subsetSize: settings.kidSubsetSize,
      });
      const details = {
        extractor: extractor.where,
        extractorId: extractor.id,
        extractorKind: extractor.kind,
        extractorOptions: extractor.options,
        featureDim: features.dim,
        referenceSplit: 'train',
        referenceImages: reference.stats.count,
      };
      records.push(
        { metric: 'fid', value: fid.distance, ...common, ...sampling, details, evaluatedAt: now() },
        {
          metric: 'kid',
          value: kid.value,
          stdErr: kid.stdErr,
          ...common,
          ...sampling,
          details: {
            ...details,
            kidStd: kid.std,
            subsets: kid.subsets,
            subsetSize: kid.subsetSize,
            referenceFeatures: reference.features.count,
          },
          evaluatedAt: now(),
        },
      );
    }
  }

  const key = runKeys.evalMetrics(
    target.runId,
    target.step,
    evaluationId(settings, seed, extractor?.id ?? null),
  );
  await store.put(key, records.map((r) => JSON.stringify(r) + '\n').join(''));
  return { key, records, summary: summarize(target.step, key, records, skipped), classifier: classifierInfo };
}

async function statsOf(f: FeatureMatrix) {
  if (f.count < 2) throw new RangeError('a Fréchet distance needs at least 2 samples');
  return gaussianStats(f);
}

function summarize(step: number, key: string, records: MetricRecord[], skipped: string[]): EvaluationSummary {
  const find = (m: MetricId) => records.find((r) => r.metric === m);
  const num = (m: MetricId) => {
    const v = find(m)?.value;
    return typeof v === 'number' ? v : null;
  };
  return {
    step,
    bitsPerDim: num('bits_per_dim'),
    bitsPerDimStdErr: find('bits_per_dim')?.stdErr ?? null,
    classifierFid: num('classifier_fid'),
    confidentShare: num('classifier_confident_share'),
    fid: num('fid'),
    kid: num('kid'),
    key,
    skipped,
  };
}
