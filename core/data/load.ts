import { loadCifar10 } from './cifar10';
import { detectFormat } from './detect-format';
import { loadEmbeddedDigits } from './embedded-digits';
import { DatasetError } from './errors';
import { loadMnist } from './mnist';
import { loadPngDirectory } from './png-directory';
import type { DatasetFormat, DatasetSplit, ImageBatch, ImageDataset } from './types';

export interface LoadImageDatasetOptions {
  /** Default 'auto': decided from file names and contents. */
  format?: 'auto' | DatasetFormat;
  /** Default 'train'. Used by CIFAR-10 and MNIST directories and the CIFAR-10 archive. */
  split?: DatasetSplit;
}

const FORMATS: readonly string[] = ['auto', 'cifar10', 'mnist', 'png-dir', 'embedded-digits'];
const SPLITS: readonly string[] = ['train', 'test', 'all'];

/**
 * Reads an image dataset into memory as NHWC bytes. `source` is a CIFAR-10 batch directory, .bin file or
 * cifar-10-binary.tar.gz; an MNIST directory or IDX images file (raw or .gz); a directory of PNGs; or
 * the digits that ship with the install (EMBEDDED_DIGITS).
 * Every problem with the data is a one-line DatasetError naming the file.
 */
export async function loadImageDataset(
  source: string,
  opts: LoadImageDatasetOptions = {},
): Promise<ImageDataset> {
  const requestedFormat = opts.format ?? 'auto';
  const split = opts.split ?? 'train';
  // Options often come straight from a command line, so check them at runtime too.
  if (!FORMATS.includes(requestedFormat)) {
    throw new DatasetError(
      source,
      `unknown format '${requestedFormat}' (expected one of ${FORMATS.join(', ')})`,
    );
  }
  if (!SPLITS.includes(split)) {
    throw new DatasetError(source, `unknown split '${split}' (expected one of ${SPLITS.join(', ')})`);
  }
  const format = requestedFormat === 'auto' ? await detectFormat(source) : requestedFormat;
  let batch: ImageBatch;
  switch (format) {
    case 'cifar10':
      batch = await loadCifar10(source, split);
      break;
    case 'mnist':
      batch = await loadMnist(source, split);
      break;
    case 'png-dir':
      batch = await loadPngDirectory(source);
      break;
    case 'embedded-digits':
      batch = await loadEmbeddedDigits(source, split);
      break;
  }
  return { source, format, ...batch };
}
