/**
 * The run's store layout: every object key a run writes or reads is spelled here, and only here.
 *
 *   <run>/config.json                          the run's configuration (local `train`)
 *   <run>/latest                               the newest committed checkpoint's folder key
 *   <run>/dataset/{manifest.json,shard-*.u8,labels.u8}  prepared training images (and labels)
 *   <run>/dataset/test/...                     the declared held-out split, when the source has one
 *   <run>/checkpoints/<step>/...               one checkpoint (see core/checkpoint)
 *   <run>/metrics/<step>.jsonl                 training metrics (loss, lr, ...) up to that checkpoint
 *   <run>/metrics/eval/<step>-<id>.jsonl       one evaluation: one JSON line per metric
 *   <run>/plots/{metrics.png,index.html}       plots, regenerated after each evaluation
 *   <run>/tensorboard/events.out.tfevents.<step>.<part>  TensorBoard scalars (native backend only)
 *   <run>/samples/<step>.png                   the run's periodic EMA grid
 *   <run>/samples/<step>/<set>/                one sample set (see sampleSetKeys)
 *   <run>/inpaint/<id>/{image,mask,result}.png one inpainting request
 *   _shared/datasets/<fingerprint>/...         per-dataset caches shared by every run of a store (sharedKeys)
 *
 * Steps appear zero-padded so that keys sort in step order. `_shared` cannot collide with a run: run IDs
 * start with a letter or digit.
 */

const STEP_DIGITS = 9;

/** A step as it appears in object keys: zero-padded so keys sort in step order. */
export function stepName(step: number): string {
  return String(step).padStart(STEP_DIGITS, '0');
}

export const runKeys = {
  config: (runId: string) => `${runId}/config.json`,
  latest: (runId: string) => `${runId}/latest`,
  datasetPrefix: (runId: string) => `${runId}/dataset/`,
  datasetManifest: (runId: string) => `${runId}/dataset/manifest.json`,
  heldOutManifest: (runId: string) => `${runId}/dataset/test/manifest.json`,
  checkpointsPrefix: (runId: string) => `${runId}/checkpoints/`,
  checkpoint: (runId: string, step: number) => `${runId}/checkpoints/${stepName(step)}`,
  /** Lists with metricsPrefix() and keeps the keys isTrainMetricsKey() accepts. */
  metricsPrefix: (runId: string) => `${runId}/metrics/`,
  metrics: (runId: string, step: number) => `${runId}/metrics/${stepName(step)}.jsonl`,
  evalMetricsPrefix: (runId: string) => `${runId}/metrics/eval/`,
  /** `id` tells evaluations of the same checkpoint apart (it hashes their settings). */
  evalMetrics: (runId: string, step: number, id: string) =>
    `${runId}/metrics/eval/${stepName(step)}-${id}.jsonl`,
  plots: (runId: string) => ({ png: `${runId}/plots/metrics.png`, html: `${runId}/plots/index.html` }),
  tensorboardPrefix: (runId: string) => `${runId}/tensorboard/`,
  /**
   * The event file made from one metrics object. Names sort in the order the objects are written
   * (training lines up to a step, then that step's evaluations), which is the order TensorBoard reads them.
   */
  tensorboardEvents: (runId: string, step: number, part: string) =>
    `${runId}/tensorboard/events.out.tfevents.${stepName(step)}.${part}`,
  samplesPrefix: (runId: string) => `${runId}/samples/`,
  /** The periodic EMA grid the training run writes at `step`. */
  sampleGrid: (runId: string, step: number) => `${runId}/samples/${stepName(step)}.png`,
  /** The folder of one sample set: images of a checkpoint under one sampler, seed and count. */
  sampleSet: (runId: string, step: number, setName: string) =>
    `${runId}/samples/${stepName(step)}/${setName}`,
  inpaint: (runId: string, id: string) => `${runId}/inpaint/${id}`,
};

/** Per-dataset caches shared by every run of a store, keyed by the dataset's fingerprint. */
export const sharedKeys = {
  dataset: (fingerprint: string) => `_shared/datasets/${fingerprint}/`,
  /** The built-in quality classifier: model.json, weights.bin, info.json. */
  classifier: (fingerprint: string) => `_shared/datasets/${fingerprint}/classifier/`,
  /** Reference feature statistics for FID/KID: stats.json and the feature matrices. */
  referenceStats: (fingerprint: string, extractorId: string, split: string) =>
    `_shared/datasets/${fingerprint}/reference/${extractorId}-${split}/`,
};

/** An object beside a manifest (a shard, the labels). */
export function siblingKey(manifestKey: string, name: string): string {
  return `${manifestKey.slice(0, manifestKey.lastIndexOf('/'))}/${name}`;
}

/** True for training-metrics keys (`<run>/metrics/<step>.jsonl`), not evaluation records. */
export function isTrainMetricsKey(key: string): boolean {
  return /\/metrics\/\d+\.jsonl$/.test(key);
}

/** True for the keys of periodic grids (`<run>/samples/<step>.png`), not the images of sample sets. */
export function isSampleGridKey(runId: string, key: string): boolean {
  return new RegExp(`^${escapeRegExp(runId)}/samples/\\d{${STEP_DIGITS},}\\.png$`).test(key);
}

/**
 * Inside a sample set's folder: `manifest.json` (written last: a set without it is incomplete), `grid.png`
 * (the first images as one grid), `images/<index>.png` (one PNG per image, by global index) and
 * `chunks/<first>.u8` + `chunks/<first>.json` (the raw NHWC bytes of each chunk and its record).
 */
export const sampleSetKeys = {
  manifest: (set: string) => `${set}/manifest.json`,
  grid: (set: string) => `${set}/grid.png`,
  image: (set: string, index: number) => `${set}/images/${String(index).padStart(6, '0')}.png`,
  chunkPixels: (set: string, first: number) => `${set}/chunks/${String(first).padStart(9, '0')}.u8`,
  chunkRecord: (set: string, first: number) => `${set}/chunks/${String(first).padStart(9, '0')}.json`,
};

/** Inside an inpainting request's folder. */
export const inpaintKeys = {
  image: (dir: string) => `${dir}/image.png`,
  mask: (dir: string) => `${dir}/mask.png`,
  result: (dir: string) => `${dir}/result.png`,
};

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
