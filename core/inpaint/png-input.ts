import { PNG } from 'pngjs';
import { describeError } from '../data/errors';
import { InvalidInputError } from '../errors';

export interface ModelImageShape {
  height: number;
  width: number;
  channels: number;
}

interface DecodedPng {
  width: number;
  height: number;
  /** 8-bit RGBA, as pngjs returns every PNG. */
  rgba: Buffer;
  gray: boolean;
}

function decode(bytes: Uint8Array, what: string): DecodedPng {
  try {
    const png = PNG.sync.read(Buffer.from(bytes));
    return { width: png.width, height: png.height, rgba: png.data, gray: !png.color };
  } catch (err) {
    throw new InvalidInputError(`${what}: not a readable PNG (${describeError(err)})`);
  }
}

function checkSize(png: DecodedPng, shape: ModelImageShape, what: string, modelName: string): void {
  if (png.width !== shape.width || png.height !== shape.height) {
    throw new InvalidInputError(
      `${what} is ${png.width}x${png.height} but ${modelName} takes ${shape.width}x${shape.height} images`,
    );
  }
}

/**
 * A PNG as the model's pixels (HWC uint8). Alpha is dropped; a grayscale PNG fills every channel of an RGB
 * model; a colour PNG feeds a grayscale model only if it is gray in fact (R = G = B everywhere).
 */
export function decodeModelImage(
  bytes: Uint8Array,
  shape: ModelImageShape,
  what: string,
  modelName: string,
): Uint8Array {
  const png = decode(bytes, what);
  checkSize(png, shape, what, modelName);
  const n = png.width * png.height;
  const out = new Uint8Array(n * shape.channels);
  for (let p = 0; p < n; p++) {
    const [r, g, b] = [png.rgba[p * 4], png.rgba[p * 4 + 1], png.rgba[p * 4 + 2]];
    if (shape.channels === 1) {
      if (r !== g || g !== b) {
        throw new InvalidInputError(
          `${what} has colour but ${modelName} is grayscale; convert it to gray first`,
        );
      }
      out[p] = r;
    } else {
      out.set(png.gray ? [r, r, r] : [r, g, b], p * 3);
    }
  }
  return out;
}

/** Mask values at or above this (in the first channel) keep the pixel; below, the pixel is filled. */
export const MASK_KEEP_THRESHOLD = 128;

/**
 * A mask PNG as one byte per pixel, 1 = keep the image's pixel, 0 = fill it: white keeps, black fills
 * (RePaint's convention). Only the first channel is read; any size but the model's is an error.
 */
export function decodeKeepMask(
  bytes: Uint8Array,
  shape: ModelImageShape,
  what: string,
  modelName: string,
): Uint8Array {
  const png = decode(bytes, what);
  checkSize(png, shape, what, modelName);
  const n = png.width * png.height;
  const keep = new Uint8Array(n);
  for (let p = 0; p < n; p++) keep[p] = png.rgba[p * 4] >= MASK_KEEP_THRESHOLD ? 1 : 0;
  return keep;
}
