import { DatasetError } from './errors';
import type { ImageBatch } from './types';

const SIDE = 32;
const CHANNELS = 3;
const PLANE_BYTES = SIDE * SIDE;
const IMAGE_BYTES = PLANE_BYTES * CHANNELS;
/** One label byte, then the red, green and blue planes. */
export const CIFAR10_RECORD_BYTES = 1 + IMAGE_BYTES;
const CLASS_COUNT = 10;

/**
 * Decodes CIFAR-10 binary records (planar CHW per image) into NHWC. Any whole number of records is
 * accepted, since subsets of the batches are common; a partial record means a truncated or wrong file.
 */
export function decodeCifar10Records(bytes: Uint8Array, file: string): ImageBatch {
  if (bytes.length === 0) throw new DatasetError(file, 'empty dataset: file has no CIFAR-10 records');
  const trailing = bytes.length % CIFAR10_RECORD_BYTES;
  if (trailing !== 0) {
    const whole = Math.floor(bytes.length / CIFAR10_RECORD_BYTES);
    throw new DatasetError(
      file,
      `truncated record: ${bytes.length} bytes is ${whole} whole ${CIFAR10_RECORD_BYTES}-byte CIFAR-10 ` +
        `records plus ${trailing} trailing bytes`,
    );
  }
  const count = bytes.length / CIFAR10_RECORD_BYTES;
  const pixels = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  for (let record = 0; record < count; record++) {
    const start = record * CIFAR10_RECORD_BYTES;
    const label = bytes[start];
    // A label outside 0..9 almost always means this is not CIFAR-10 (e.g. CIFAR-100's 2-byte labels).
    if (label >= CLASS_COUNT) {
      throw new DatasetError(file, `record ${record} has label ${label}, but CIFAR-10 labels are 0..9`);
    }
    labels[record] = label;
    const red = start + 1;
    const green = red + PLANE_BYTES;
    const blue = green + PLANE_BYTES;
    let out = record * IMAGE_BYTES;
    for (let p = 0; p < PLANE_BYTES; p++) {
      pixels[out++] = bytes[red + p];
      pixels[out++] = bytes[green + p];
      pixels[out++] = bytes[blue + p];
    }
  }
  return { height: SIDE, width: SIDE, channels: CHANNELS, count, pixels, labels };
}
