import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';

import { DatasetError, describeError } from './errors';
import { readRawHead } from './file-bytes';
import { checkImageSide } from './limits';
import { listDirectory } from './paths';
import type { ImageBatch } from './types';

export function isPngName(name: string): boolean {
  return /\.png$/i.test(name);
}

/** One decoded PNG kept in its smallest faithful form: 1 channel if grayscale, else RGB (alpha dropped). */
interface CompactImage {
  file: string;
  gray: boolean;
  pixels: Uint8Array;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Bytes up to and including IHDR's colour type. */
const PNG_HEAD_BYTES = 26;

/**
 * Width, height and whether it is colour, from the IHDR chunk, which the format requires first, right
 * after the signature: known from 26 bytes, before anything is inflated. Null when the file does not
 * start that way (the decoder then says what is wrong).
 */
function declaredPngSize(bytes: Buffer): { width: number; height: number; color: boolean } | null {
  if (bytes.length < PNG_HEAD_BYTES || !bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return null;
  if (bytes.toString('latin1', 12, 16) !== 'IHDR') return null;
  // Colour types 0 and 4 are gray (with or without alpha); palettes count as colour, as in decodePng.
  const colorType = bytes[25];
  return {
    width: bytes.readUInt32BE(16),
    height: bytes.readUInt32BE(20),
    color: colorType !== 0 && colorType !== 4,
  };
}

/**
 * The image size of a PNG directory from its first image's header, without decoding anything:
 * channels is 3 when that image is colour, and null when it is gray (the dataset is 1-channel only if
 * every image is gray).
 */
export async function peekPngDirectory(
  dir: string,
): Promise<{ height: number; width: number; channels: number | null }> {
  const first = (await listDirectory(dir)).files.find(isPngName);
  if (first === undefined) throw new DatasetError(dir, 'empty dataset: directory has no .png files');
  const size = declaredPngSize(await readRawHead(join(dir, first), PNG_HEAD_BYTES));
  if (!size) throw new DatasetError(join(dir, first), 'unreadable PNG: no PNG header');
  return { height: size.height, width: size.width, channels: size.color ? 3 : null };
}

function decodePng(file: string, bytes: Buffer): { png: PNG; gray: boolean } {
  try {
    const png = PNG.sync.read(bytes);
    // `color` is false only for gray and gray+alpha; palettes count as colour even if their entries are gray.
    return { png, gray: !png.color };
  } catch (err) {
    throw new DatasetError(file, `unreadable PNG: ${describeError(err)}`);
  }
}

/** pngjs always hands back 8-bit RGBA; keep only the channels the image really has. */
function compactPixels(rgba: Buffer, gray: boolean): Uint8Array {
  const pixelCount = rgba.length / 4;
  const channels = gray ? 1 : 3;
  const out = new Uint8Array(pixelCount * channels);
  for (let p = 0, o = 0; p < pixelCount; p++) {
    for (let c = 0; c < channels; c++) out[o++] = rgba[p * 4 + c];
  }
  return out;
}

function checkSameSize(
  file: string,
  size: { width: number; height: number },
  firstFile: string,
  width: number,
  height: number,
): void {
  if (size.width !== width || size.height !== height) {
    throw new DatasetError(
      file,
      `wrong image size: ${size.width}x${size.height} but the first image ${firstFile} is ` +
        `${width}x${height} (width x height); all PNGs must share one size`,
    );
  }
}

/**
 * Loads every .png directly in `dir` (sorted by name, not recursive) as one dataset. All images must
 * share the first one's size. The dataset is 1-channel when every image is grayscale, otherwise RGB,
 * with grayscale images replicated into all three channels.
 */
export async function loadPngDirectory(dir: string): Promise<ImageBatch> {
  const names = (await listDirectory(dir)).files.filter(isPngName);
  if (names.length === 0) throw new DatasetError(dir, 'empty dataset: directory has no .png files');
  const images: CompactImage[] = [];
  let width = 0;
  let height = 0;
  for (const name of names) {
    const file = join(dir, name);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new DatasetError(file, `cannot read: ${describeError(err)}`);
    }
    // Sizes are checked from the header, so an oversized or odd-sized image is refused undecoded.
    const declared = declaredPngSize(bytes);
    if (declared) {
      checkImageSide(file, declared.width, declared.height);
      if (images.length > 0) checkSameSize(file, declared, images[0].file, width, height);
    }
    const { png, gray } = decodePng(file, bytes);
    if (images.length === 0) {
      width = png.width;
      height = png.height;
    } else {
      checkSameSize(file, png, images[0].file, width, height);
    }
    images.push({ file, gray, pixels: compactPixels(png.data, gray) });
  }
  const channels = images.every((image) => image.gray) ? 1 : 3;
  const imagePixels = width * height;
  const pixels = new Uint8Array(images.length * imagePixels * channels);
  images.forEach((image, index) => {
    const offset = index * imagePixels * channels;
    if (image.gray === (channels === 1)) {
      pixels.set(image.pixels, offset);
      return;
    }
    for (let p = 0; p < imagePixels; p++) pixels.fill(image.pixels[p], offset + p * 3, offset + p * 3 + 3);
  });
  return { height, width, channels, count: images.length, pixels };
}
