import { DatasetError } from './errors';
import type { ImageBatch } from './types';

export interface NamedBatch {
  file: string;
  batch: ImageBatch;
}

/**
 * Joins batches read from several files into one, in the given order. Labels survive only if every
 * batch has them, because a label array covering part of the images would be misaligned.
 */
export function concatBatches(parts: readonly NamedBatch[]): ImageBatch {
  if (parts.length === 0) throw new RangeError('concatBatches needs at least one batch');
  const first = parts[0];
  const { height, width, channels } = first.batch;
  for (const { file, batch } of parts) {
    if (batch.height !== height || batch.width !== width || batch.channels !== channels) {
      throw new DatasetError(
        file,
        `wrong image size: ${batch.width}x${batch.height}x${batch.channels} but ${first.file} has ` +
          `${width}x${height}x${channels} (width x height x channels)`,
      );
    }
  }
  if (parts.length === 1) return first.batch;
  const count = parts.reduce((sum, { batch }) => sum + batch.count, 0);
  const pixels = new Uint8Array(count * height * width * channels);
  const withLabels = parts.every(({ batch }) => batch.labels !== undefined);
  const labels = withLabels ? new Uint8Array(count) : undefined;
  let imageOffset = 0;
  for (const { batch } of parts) {
    pixels.set(batch.pixels, imageOffset * height * width * channels);
    if (labels && batch.labels) labels.set(batch.labels, imageOffset);
    imageOffset += batch.count;
  }
  return { height, width, channels, count, pixels, ...(labels ? { labels } : {}) };
}
