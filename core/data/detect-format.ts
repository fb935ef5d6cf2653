import { CIFAR10_BATCH_DIRECTORY, isCifar10BatchName } from './cifar10';
import { EMBEDDED_DIGITS, isEmbeddedSource } from './embedded-digits';
import { DatasetError } from './errors';
import { nameWithoutGz, readContentHead } from './file-bytes';
import { IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, readIdxMagic } from './mnist-idx';
import { isMnistImagesName } from './mnist';
import { listDirectory, pathKind } from './paths';
import { isPngName } from './png-directory';
import { looksLikeTar } from './tar-entries';
import type { DatasetFormat } from './types';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

async function detectDirectoryFormat(dir: string): Promise<DatasetFormat> {
  const { files, directories } = await listDirectory(dir);
  if (files.some(isCifar10BatchName) || directories.includes(CIFAR10_BATCH_DIRECTORY)) return 'cifar10';
  if (files.some(isMnistImagesName)) return 'mnist';
  if (files.some(isPngName)) return 'png-dir';
  if (files.length === 0 && directories.length === 0) {
    throw new DatasetError(dir, 'empty dataset: directory is empty');
  }
  throw new DatasetError(
    dir,
    'unknown format: directory has no CIFAR-10 batches (data_batch_*.bin, test_batch.bin), ' +
      'MNIST images (*-images-idx3-ubyte) or .png files',
  );
}

/**
 * Names decide before contents where they are specific (CIFAR-10 records have no magic number, and a
 * record can begin with bytes that look like IDX magic); contents decide for archives and for files
 * with unfamiliar names.
 */
async function detectFileFormat(file: string): Promise<DatasetFormat> {
  const head = await readContentHead(file);
  if (head.length === 0) throw new DatasetError(file, 'empty dataset: file is empty');
  if (looksLikeTar(head) || isCifar10BatchName(file)) return 'cifar10';
  const magic = readIdxMagic(head);
  if (magic === IDX_IMAGES_MAGIC || isMnistImagesName(file)) return 'mnist';
  if (magic === IDX_LABELS_MAGIC) {
    throw new DatasetError(file, 'is an MNIST labels file; load the images file or its directory instead');
  }
  if (/\.bin$/i.test(nameWithoutGz(file))) return 'cifar10';
  if (head.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE)) {
    throw new DatasetError(file, 'is a single PNG; load the directory holding the .png files instead');
  }
  throw new DatasetError(
    file,
    'unknown format: not a CIFAR-10 .bin batch or archive, nor an MNIST IDX images file',
  );
}

/** Works out which format a dataset source holds, from its names and first bytes. */
export async function detectFormat(source: string): Promise<DatasetFormat> {
  if (isEmbeddedSource(source)) {
    if (source === EMBEDDED_DIGITS) return 'embedded-digits';
    throw new DatasetError(source, `unknown embedded dataset (the one shipped is ${EMBEDDED_DIGITS})`);
  }
  return (await pathKind(source)) === 'directory' ? detectDirectoryFormat(source) : detectFileFormat(source);
}
