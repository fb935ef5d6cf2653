/**
 * The run's store layout: every object key a run writes or reads is spelled here, and only here.
 *
 *   <run>/config.json                          the run's configuration (local `train`)
 *   <run>/latest                               the newest committed checkpoint's folder key
 *   <run>/dataset/{manifest.json,shard-*.u8}   prepared training images
 *   <run>/checkpoints/<step>/...               one checkpoint (see core/checkpoint)
 *   <run>/metrics/<step>.jsonl                 training metrics (local `train`)
 *   <run>/samples/<step>.png                   the run's periodic EMA grid
 *   <run>/samples/<step>/<set>/                one sample set (see sampleSetKeys)
 *   <run>/inpaint/<id>/{image,mask,result}.png one inpainting request
 *
 * Steps appear zero-padded so that keys sort in step order.
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
  checkpointsPrefix: (runId: string) => `${runId}/checkpoints/`,
  checkpoint: (runId: string, step: number) => `${runId}/checkpoints/${stepName(step)}`,
  metrics: (runId: string, step: number) => `${runId}/metrics/${stepName(step)}.jsonl`,
  samplesPrefix: (runId: string) => `${runId}/samples/`,
  /** The periodic EMA grid the training run writes at `step`. */
  sampleGrid: (runId: string, step: number) => `${runId}/samples/${stepName(step)}.png`,
  /** The folder of one sample set: images of a checkpoint under one sampler, seed and count. */
  sampleSet: (runId: string, step: number, setName: string) =>
    `${runId}/samples/${stepName(step)}/${setName}`,
  inpaint: (runId: string, id: string) => `${runId}/inpaint/${id}`,
};

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
