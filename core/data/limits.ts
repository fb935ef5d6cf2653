import { DatasetError } from './errors';

/**
 * What a dataset file may declare before it is decoded. Headers (PNG IHDR, IDX dimensions, tar entry
 * sizes) are checked against these first, so a hostile or mistaken file is refused from a few bytes
 * instead of after inflating gigabytes. 4096 pixels a side is far above any DDPM training resolution.
 */
export const MAX_IMAGE_SIDE = 4096;

/** A decompressed size cap and the reason for it, as an error message says it. */
export interface SizeLimit {
  maxBytes: number;
  /** e.g. "the size its IDX header declares". */
  what: string;
}

export function checkImageSide(file: string, width: number, height: number, what = 'image is'): void {
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE) {
    throw new DatasetError(
      file,
      `${what} ${width}x${height} pixels; at most ${MAX_IMAGE_SIDE}x${MAX_IMAGE_SIDE} are accepted`,
    );
  }
}
