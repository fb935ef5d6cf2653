import { basename, dirname, join } from 'node:path';

import { concatBatches, type NamedBatch } from './concat-batches';
import { DatasetError } from './errors';
import { nameWithoutGz, readContentHead, readFileBytes } from './file-bytes';
import { decodeIdxImages, decodeIdxLabels, idxDeclaredBytes } from './mnist-idx';
import { listDirectory, pathKind } from './paths';
import type { DatasetSplit, ImageBatch } from './types';

/** Both the official "train-images-idx3-ubyte" and the common "train-images.idx3-ubyte" spelling. */
const IMAGES_NAME = /^(train|t10k)-images([.-])idx3-ubyte$/;

/** "train" or "t10k" for an MNIST images file name (optionally .gz), otherwise undefined. */
function imagesSplitPrefix(name: string): string | undefined {
  return IMAGES_NAME.exec(nameWithoutGz(name))?.[1];
}

export function isMnistImagesName(name: string): boolean {
  return imagesSplitPrefix(name) !== undefined;
}

function labelsNameFor(imagesName: string): string {
  return nameWithoutGz(imagesName).replace(/images([.-])idx3/, 'labels$1idx1');
}

/** The labels file beside an images file, raw or gzipped, if there is one. */
function findLabelsFile(imagesName: string, siblings: readonly string[]): string | undefined {
  const wanted = labelsNameFor(imagesName);
  return siblings.find((name) => name === wanted) ?? siblings.find((name) => name === `${wanted}.gz`);
}

/**
 * An IDX file's bytes, inflated no further than its header declares. A file whose first bytes are no
 * valid header is returned as those bytes, for the decoder to say what is wrong with them.
 */
async function readIdxFile(file: string, kind: 'images' | 'labels'): Promise<Buffer> {
  const head = await readContentHead(file);
  const declared = idxDeclaredBytes(head, file, kind);
  if (declared === undefined) return head;
  return readFileBytes(file, { maxBytes: declared, what: 'the size its IDX header declares' });
}

async function loadImagesWithLabels(imagesFile: string, labelsFile: string | undefined): Promise<ImageBatch> {
  const batch = decodeIdxImages(await readIdxFile(imagesFile, 'images'), imagesFile);
  if (labelsFile === undefined) return batch;
  const labels = decodeIdxLabels(await readIdxFile(labelsFile, 'labels'), labelsFile);
  if (labels.length !== batch.count) {
    throw new DatasetError(
      labelsFile,
      `has ${labels.length} labels but ${imagesFile} has ${batch.count} images`,
    );
  }
  return { ...batch, labels };
}

const SPLIT_PREFIXES: Record<DatasetSplit, string[]> = {
  train: ['train'],
  test: ['t10k'],
  all: ['train', 't10k'],
};

/** The images file of one split among a directory's files; the raw one when a .gz copy sits beside it. */
function imagesNameFor(files: readonly string[], prefix: string): string | undefined {
  const candidates = files.filter((name) => imagesSplitPrefix(name) === prefix);
  return candidates.find((name) => !/\.gz$/i.test(name)) ?? candidates[0];
}

/** The first images file a load of `split` reads (the source itself when it is a file). */
export async function firstMnistImagesFile(source: string, split: DatasetSplit): Promise<string | undefined> {
  if ((await pathKind(source)) !== 'directory') return source;
  const { files } = await listDirectory(source);
  for (const prefix of SPLIT_PREFIXES[split]) {
    const name = imagesNameFor(files, prefix);
    if (name !== undefined) return join(source, name);
  }
  return undefined;
}

async function loadFromDirectory(dir: string, split: DatasetSplit): Promise<ImageBatch> {
  const { files } = await listDirectory(dir);
  const parts: NamedBatch[] = [];
  for (const prefix of SPLIT_PREFIXES[split]) {
    const imagesName = imagesNameFor(files, prefix);
    if (imagesName === undefined) continue;
    const imagesFile = join(dir, imagesName);
    const labelsName = findLabelsFile(imagesName, files);
    parts.push({
      file: imagesFile,
      batch: await loadImagesWithLabels(imagesFile, labelsName && join(dir, labelsName)),
    });
  }
  if (parts.length === 0) {
    const expected = SPLIT_PREFIXES[split].map((prefix) => `${prefix}-images-idx3-ubyte`).join(' or ');
    throw new DatasetError(dir, `empty dataset: directory has no MNIST ${expected} for split '${split}'`);
  }
  return concatBatches(parts);
}

/**
 * Loads MNIST-style IDX data (MNIST, Fashion-MNIST, ...) from a directory holding the standard file
 * names, or from one images file. Labels are attached when the matching labels file sits beside the
 * images. `split` picks files in a directory; a single file is loaded whole.
 */
export async function loadMnist(source: string, split: DatasetSplit): Promise<ImageBatch> {
  if ((await pathKind(source)) === 'directory') return loadFromDirectory(source, split);
  const { files } = await listDirectory(dirname(source));
  const labelsName = isMnistImagesName(source) ? findLabelsFile(basename(source), files) : undefined;
  return loadImagesWithLabels(source, labelsName && join(dirname(source), labelsName));
}
