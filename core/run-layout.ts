/**
 * Where things live in a run's store: every object key the evaluation side of the project writes or reads
 * is spelled here, once. (Checkpoint keys live with their commit protocol in core/checkpoint/repository.ts,
 * sample grid keys in core/sampling.ts.)
 *
 *   <run>/dataset/manifest.json, shard-*.u8, labels.u8     training split, prepared once per run
 *   <run>/dataset/test/manifest.json, ...                   the declared held-out split, when the source has one
 *   <run>/metrics/<step>.jsonl                              training metrics (loss, lr, ...) up to that checkpoint
 *   <run>/metrics/eval/<step>-<id>.jsonl                    one evaluation: one JSON line per metric
 *   <run>/plots/metrics.png, index.html                     plots regenerated after each evaluation
 *   <run>/tensorboard/events.out.tfevents.<step>.<part>     TensorBoard scalars, one file per metrics object
 *                                                           (native backend only)
 *   _shared/datasets/<fingerprint>/...                      per-dataset caches shared by every run of a store:
 *     classifier/{model.json,weights.bin,info.json}           the built-in quality classifier
 *     reference/<extractor>-<split>/{stats.json,*.f64,*.f32}  reference feature statistics for FID/KID
 *
 * `_shared` cannot collide with a run: run IDs start with a letter or digit.
 */
import { stepName } from './checkpoint/repository';

const SHARED = '_shared';

export function datasetManifestKey(runId: string): string {
  return `${runId}/dataset/manifest.json`;
}

export function heldOutManifestKey(runId: string): string {
  return `${runId}/dataset/test/manifest.json`;
}

/** An object beside a manifest (a shard, the labels). */
export function siblingKey(manifestKey: string, name: string): string {
  return `${manifestKey.slice(0, manifestKey.lastIndexOf('/'))}/${name}`;
}

export function trainMetricsKey(runId: string, step: number): string {
  return `${runId}/metrics/${stepName(step)}.jsonl`;
}

/** Lists with trainMetricsPrefix() and keeps the keys isTrainMetricsKey() accepts. */
export function trainMetricsPrefix(runId: string): string {
  return `${runId}/metrics/`;
}

export function isTrainMetricsKey(key: string): boolean {
  return /\/metrics\/\d+\.jsonl$/.test(key);
}

export function evalMetricsPrefix(runId: string): string {
  return `${runId}/metrics/eval/`;
}

/** `id` tells evaluations of the same checkpoint apart (it hashes their settings). */
export function evalMetricsKey(runId: string, step: number, id: string): string {
  return `${evalMetricsPrefix(runId)}${stepName(step)}-${id}.jsonl`;
}

export function plotKeys(runId: string): { png: string; html: string } {
  return { png: `${runId}/plots/metrics.png`, html: `${runId}/plots/index.html` };
}

export function tensorboardPrefix(runId: string): string {
  return `${runId}/tensorboard/`;
}

/**
 * The event file made from one metrics object. Names sort in the order the objects are written (training
 * lines up to a step, then that step's evaluations), which is the order TensorBoard reads them in.
 */
export function tensorboardEventsKey(runId: string, step: number, part: string): string {
  return `${tensorboardPrefix(runId)}events.out.tfevents.${stepName(step)}.${part}`;
}

export function sharedDatasetPrefix(fingerprint: string): string {
  return `${SHARED}/datasets/${fingerprint}/`;
}

export function classifierPrefix(fingerprint: string): string {
  return `${sharedDatasetPrefix(fingerprint)}classifier/`;
}

export function referenceStatsPrefix(fingerprint: string, extractorId: string, split: string): string {
  return `${sharedDatasetPrefix(fingerprint)}reference/${extractorId}-${split}/`;
}
