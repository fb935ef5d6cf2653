/**
 * What an evaluation computes and with which settings: shared by the CLI, the evaluate activity and the
 * TrainingRun workflow (which resolves a run's evaluation plan with these defaults), so this module stays
 * free of Node APIs and TF.js.
 */
export type MetricName = 'bpd' | 'fid' | 'score';
export const METRIC_NAMES: readonly MetricName[] = ['bpd', 'fid', 'score'];

export interface EvaluationSampler {
  kind: 'ancestral' | 'ddim';
  /** DDIM steps (ignored by 'ancestral', which takes one per timestep). */
  steps?: number;
}

export interface EvaluationSettings {
  metrics: MetricName[];
  /** Generated images for FID/KID and the classifier score. */
  samples: number;
  sampler: EvaluationSampler;
  /** Root of the sample noise, the bits/dim draws and the KID subsets (unset: derived from the run seed). */
  seed?: number;
  /** Held-out images for bits/dim (a fixed subset, the same at every step). */
  bpdImages: number;
  /** KL timesteps per image; 'all' evaluates the exact bound (T - 1 model calls per image). */
  bpdTimesteps: number | 'all';
  /** Images per model call (bits/dim, sampling, features). */
  batchSize: number;
  kidSubsets: number;
  kidSubsetSize: number;
  /** Training images whose features make the FID reference (default all, as for published CIFAR-10 FIDs). */
  referenceImages?: number;
}

/** What `npm run evaluate` does by default. */
export const EVALUATION_DEFAULTS: EvaluationSettings = {
  metrics: ['bpd', 'score'],
  samples: 500,
  sampler: { kind: 'ddim', steps: 50 },
  bpdImages: 256,
  bpdTimesteps: 16,
  batchSize: 64,
  kidSubsets: 100,
  kidSubsetSize: 1000,
};

/**
 * In-run evaluations cost less, so they stay a small fraction of a CPU run's time: fewer samples and DDIM
 * steps (the classifier score is then noisier, and only comparable with other in-run numbers).
 */
export const IN_RUN_EVALUATION_DEFAULTS: EvaluationSettings = {
  ...EVALUATION_DEFAULTS,
  samples: 256,
  sampler: { kind: 'ddim', steps: 25 },
};

/** A user-supplied feature network for FID/KID (see README "Evaluation"). */
export interface ExtractorSpec {
  /** Local path or s3:// URI of a TF.js model.json, or of the folder holding one. */
  uri: string;
  /** Side of the square input (default 299, Inception-v3's). */
  inputSize?: number;
  /** Pixel range the network expects (default '-1..1'). */
  inputRange?: '-1..1' | '0..1' | '0..255';
  /** Graph models with several outputs: the node to read. */
  outputNode?: string;
}

/** The latest numbers, as the workflow's status, memo and search attributes carry them. */
export interface EvaluationSummary {
  step: number;
  bitsPerDim: number | null;
  bitsPerDimStdErr: number | null;
  classifierFid: number | null;
  confidentShare: number | null;
  fid: number | null;
  kid: number | null;
  /** Key of the metric lines. */
  key: string;
  /** Metrics asked for but not computed, with the reason. */
  skipped: string[];
}

/** One line per metric, e.g. "bits/dim 1.23 ± 0.01 | classifier FID 4.5 | confident 92%". */
export function describeSummary(s: EvaluationSummary): string {
  const parts: string[] = [];
  const g = (x: number, d = 4) => String(Number(x.toPrecision(d)));
  if (s.bitsPerDim !== null) {
    parts.push(
      `bits/dim ${g(s.bitsPerDim)}${s.bitsPerDimStdErr !== null ? ` ± ${g(s.bitsPerDimStdErr, 2)}` : ''}`,
    );
  }
  if (s.classifierFid !== null) parts.push(`classifier FID ${g(s.classifierFid)}`);
  if (s.confidentShare !== null) parts.push(`confident ${Math.round(s.confidentShare * 100)}%`);
  if (s.fid !== null) parts.push(`FID ${g(s.fid)}`);
  if (s.kid !== null) parts.push(`KID ${g(s.kid, 3)}`);
  return parts.join(' | ') || 'no metric computed';
}
