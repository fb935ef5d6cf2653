import { DatasetError } from './errors';
import { checkImageSide } from './limits';
import type { ImageBatch } from './types';

/** IDX magic: two zero bytes, type 0x08 (unsigned byte), then the number of dimensions. */
export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;
const IMAGES_HEADER_BYTES = 16;
const LABELS_HEADER_BYTES = 8;

const hex32 = (value: number) => `0x${value.toString(16).padStart(8, '0')}`;

export function readIdxMagic(bytes: Uint8Array): number | undefined {
  return bytes.length >= 4 ? Buffer.from(bytes.buffer, bytes.byteOffset, 4).readUInt32BE(0) : undefined;
}

/**
 * The whole file size an IDX header declares, from its first bytes; undefined when they are not a
 * valid header (the decoder then says what is wrong). Image dimensions beyond the limit are refused.
 */
export function idxDeclaredBytes(head: Buffer, file: string, kind: 'images' | 'labels'): number | undefined {
  const [magic, headerBytes] =
    kind === 'images' ? [IDX_IMAGES_MAGIC, IMAGES_HEADER_BYTES] : [IDX_LABELS_MAGIC, LABELS_HEADER_BYTES];
  if (head.length < headerBytes || head.readUInt32BE(0) !== magic) return undefined;
  const count = head.readUInt32BE(4);
  if (kind === 'labels') return headerBytes + count;
  const height = head.readUInt32BE(8);
  const width = head.readUInt32BE(12);
  checkImageSide(file, width, height, 'images are');
  return headerBytes + count * height * width;
}

/** Checks the header and that the payload is exactly as long as the header promises. */
function checkIdx(
  bytes: Buffer,
  file: string,
  expectedMagic: number,
  headerBytes: number,
  what: string,
): void {
  if (bytes.length < headerBytes) {
    throw new DatasetError(
      file,
      `truncated header: ${bytes.length} bytes, but an IDX ${what} file starts with ${headerBytes}`,
    );
  }
  const magic = bytes.readUInt32BE(0);
  if (magic !== expectedMagic) {
    throw new DatasetError(file, `bad magic ${hex32(magic)}, expected ${hex32(expectedMagic)} (IDX ${what})`);
  }
}

function checkPayloadLength(
  bytes: Buffer,
  file: string,
  headerBytes: number,
  expected: number,
  promise: string,
): void {
  const actual = bytes.length - headerBytes;
  if (actual < expected) {
    throw new DatasetError(
      file,
      `truncated: header promises ${promise} (${expected} bytes) but only ${actual} bytes follow`,
    );
  }
  if (actual > expected) {
    throw new DatasetError(file, `${actual - expected} trailing bytes after ${promise}`);
  }
}

/** Decodes an MNIST-style IDX image file (unsigned bytes, N x rows x cols) into NHWC with one channel. */
export function decodeIdxImages(bytes: Buffer, file: string): ImageBatch {
  checkIdx(bytes, file, IDX_IMAGES_MAGIC, IMAGES_HEADER_BYTES, 'images');
  const count = bytes.readUInt32BE(4);
  const height = bytes.readUInt32BE(8);
  const width = bytes.readUInt32BE(12);
  if (count === 0) throw new DatasetError(file, 'empty dataset: header says 0 images');
  if (height === 0 || width === 0)
    throw new DatasetError(file, `image size ${height}x${width} has no pixels`);
  const imageBytes = count * height * width;
  checkPayloadLength(bytes, file, IMAGES_HEADER_BYTES, imageBytes, `${count} images of ${height}x${width}`);
  const pixels = new Uint8Array(bytes.subarray(IMAGES_HEADER_BYTES));
  return { height, width, channels: 1, count, pixels };
}

export function decodeIdxLabels(bytes: Buffer, file: string): Uint8Array {
  checkIdx(bytes, file, IDX_LABELS_MAGIC, LABELS_HEADER_BYTES, 'labels');
  const count = bytes.readUInt32BE(4);
  checkPayloadLength(bytes, file, LABELS_HEADER_BYTES, count, `${count} labels`);
  return new Uint8Array(bytes.subarray(LABELS_HEADER_BYTES));
}
