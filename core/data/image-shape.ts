import { detectFormat } from './detect-format';
import { DatasetError } from './errors';
import { readContentHead } from './file-bytes';
import { IDX_IMAGES_MAGIC, readIdxMagic } from './mnist-idx';
import { firstMnistImagesFile } from './mnist';
import { peekPngDirectory } from './png-directory';
import type { DatasetSplit } from './types';

/** An image size; channels is null when only reading every image would tell (gray PNGs). */
export interface ImageShape {
  height: number;
  width: number;
  channels: number | null;
}

/**
 * The image size a dataset holds, from headers only (nothing is decoded), so that a command can refuse
 * a dataset that does not fit the model before any work starts.
 */
export async function peekImageShape(source: string, split: DatasetSplit = 'train'): Promise<ImageShape> {
  switch (await detectFormat(source)) {
    case 'cifar10':
      return { height: 32, width: 32, channels: 3 };
    case 'embedded-digits':
      return { height: 28, width: 28, channels: 1 };
    case 'png-dir':
      return peekPngDirectory(source);
    case 'mnist': {
      const file = await firstMnistImagesFile(source, split);
      if (file === undefined)
        throw new DatasetError(source, `empty dataset: no MNIST images for split '${split}'`);
      const head = await readContentHead(file);
      if (head.length < 16 || readIdxMagic(head) !== IDX_IMAGES_MAGIC)
        throw new DatasetError(file, 'not an IDX images file');
      return { height: head.readUInt32BE(8), width: head.readUInt32BE(12), channels: 1 };
    }
  }
}
