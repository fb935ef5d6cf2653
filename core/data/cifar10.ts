import { basename, join } from 'node:path';

import { CIFAR10_RECORD_BYTES, decodeCifar10Records } from './cifar10-records';
import { concatBatches, type NamedBatch } from './concat-batches';
import { DatasetError } from './errors';
import { nameWithoutGz, readContentHead, readFileBytes } from './file-bytes';
import type { SizeLimit } from './limits';
import { listDirectory, pathKind } from './paths';
import { looksLikeTar, readTarEntries } from './tar-entries';
import type { DatasetSplit, ImageBatch } from './types';

/** The folder the official cifar-10-binary.tar.gz unpacks to. */
export const CIFAR10_BATCH_DIRECTORY = 'cifar-10-batches-bin';

/** The whole CIFAR-10 training set fits in one batch of this many records; no real batch file is larger. */
const MAX_BATCH_RECORDS = 50_000;
const BATCH_LIMIT: SizeLimit = {
  maxBytes: MAX_BATCH_RECORDS * CIFAR10_RECORD_BYTES,
  what: `the most a batch may hold (${MAX_BATCH_RECORDS} CIFAR-10 records)`,
};

const TRAIN_BATCH = /^data_batch_(\d+)\.bin$/;
const TEST_BATCH = /^test_batch\.bin$/;

/** Whether a file name (optionally .gz) is one of the CIFAR-10 batch files. */
export function isCifar10BatchName(name: string): boolean {
  const plain = nameWithoutGz(name);
  return TRAIN_BATCH.test(plain) || TEST_BATCH.test(plain);
}

function trainBatchNumber(path: string): number | undefined {
  const match = TRAIN_BATCH.exec(nameWithoutGz(path));
  return match ? Number(match[1]) : undefined;
}

function inSplit(path: string, split: DatasetSplit): boolean {
  const isTrain = trainBatchNumber(path) !== undefined;
  const isTest = TEST_BATCH.test(nameWithoutGz(path));
  return split === 'all' ? isTrain || isTest : split === 'train' ? isTrain : isTest;
}

/** Train batches in numeric order (so data_batch_10 follows data_batch_9), then the test batch. */
function orderBatches(paths: string[]): string[] {
  const rank = (path: string) => trainBatchNumber(path) ?? Number.POSITIVE_INFINITY;
  return [...paths].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

function missingBatches(source: string, split: DatasetSplit, where: string): DatasetError {
  const expected = {
    train: 'data_batch_*.bin',
    test: 'test_batch.bin',
    all: 'data_batch_*.bin or test_batch.bin',
  };
  return new DatasetError(
    source,
    `empty dataset: ${where} has no CIFAR-10 ${expected[split]} for split '${split}'`,
  );
}

async function loadFromDirectory(dir: string, split: DatasetSplit): Promise<NamedBatch[]> {
  const listing = await listDirectory(dir);
  const names = orderBatches(listing.files.filter((name) => inSplit(name, split)));
  if (names.length === 0) {
    // Accept the folder that holds the unpacked archive, not just the batch folder itself.
    if (listing.directories.includes(CIFAR10_BATCH_DIRECTORY)) {
      return loadFromDirectory(join(dir, CIFAR10_BATCH_DIRECTORY), split);
    }
    throw missingBatches(dir, split, 'directory');
  }
  const parts: NamedBatch[] = [];
  for (const name of names) {
    const file = join(dir, name);
    parts.push({ file, batch: decodeCifar10Records(await readFileBytes(file, BATCH_LIMIT), file) });
  }
  return parts;
}

async function loadFromArchive(archive: string, split: DatasetSplit): Promise<NamedBatch[]> {
  const entries = await readTarEntries(
    archive,
    (entryPath) => inSplit(basename(entryPath), split),
    BATCH_LIMIT,
  );
  const entryPaths = orderBatches([...entries.keys()]);
  if (entryPaths.length === 0) throw missingBatches(archive, split, 'archive');
  return entryPaths.map((entryPath) => {
    const file = `${archive}:${entryPath}`;
    return { file, batch: decodeCifar10Records(entries.get(entryPath)!, file) };
  });
}

/**
 * Loads CIFAR-10 (binary version) from a batch directory, the official .tar.gz archive, or one batch
 * file. `split` picks batches from a directory or archive; a single file is loaded whole.
 */
export async function loadCifar10(source: string, split: DatasetSplit): Promise<ImageBatch> {
  if ((await pathKind(source)) === 'directory') return concatBatches(await loadFromDirectory(source, split));
  if (looksLikeTar(await readContentHead(source))) {
    return concatBatches(await loadFromArchive(source, split));
  }
  return decodeCifar10Records(await readFileBytes(source, BATCH_LIMIT), source);
}
