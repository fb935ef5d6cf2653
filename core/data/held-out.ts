import { detectFormat } from './detect-format';
import { DatasetError } from './errors';
import { readContentHead } from './file-bytes';
import { loadImageDataset } from './load';
import { pathKind } from './paths';
import { looksLikeTar } from './tar-entries';
import type { ImageDataset } from './types';

/**
 * The source's declared held-out split, or null when it has none: CIFAR-10's test_batch (directory or
 * archive), MNIST's t10k files (directory), the embedded digits' declared test split. A single batch or
 * IDX file and a folder of PNGs declare no split; loading them "as test" would return the training
 * images, so they get null, never a copy of the training set.
 */
export async function loadHeldOutSplit(source: string): Promise<ImageDataset | null> {
  const format = await detectFormat(source);
  if (format === 'png-dir') return null;
  if (format === 'cifar10' || format === 'mnist') {
    const isDirectory = (await pathKind(source)) === 'directory';
    const isArchive = !isDirectory && looksLikeTar(await readContentHead(source));
    if (!isDirectory && !isArchive) return null;
  }
  try {
    return await loadImageDataset(source, { format, split: 'test' });
  } catch (err) {
    // A directory or archive with only training files: no held-out split, not a broken dataset.
    if (err instanceof DatasetError && /empty dataset: .* for split 'test'/.test(err.problem)) return null;
    throw err;
  }
}
