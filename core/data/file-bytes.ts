import { open, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import { constants, gunzip, gunzipSync } from 'node:zlib';

import { DatasetError, describeError } from './errors';
import type { SizeLimit } from './limits';

const gunzipAsync = promisify(gunzip);

/**
 * Compressed bytes read to peek at a gzip file's contents: enough for a 512-byte tar header, and small
 * enough that a highly compressible file cannot inflate into a huge peek.
 */
const GZIP_PEEK_BYTES = 4096;

export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** The file name without a trailing ".gz", which is how dataset files are recognised compressed or not. */
export function nameWithoutGz(path: string): string {
  return basename(path).replace(/\.gz$/i, '');
}

async function readRaw(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new DatasetError(path, `cannot read: ${describeError(err)}`);
  }
}

/**
 * A file's contents, gunzipped when it is gzip (recognised by its magic bytes, not its name). Inflating
 * stops at `limit.maxBytes`: a gzip bomb is cut off there instead of filling memory. Plain files are read
 * as they are (their size on disk is their size in memory).
 */
export async function readFileBytes(path: string, limit: SizeLimit): Promise<Buffer> {
  const raw = await readRaw(path);
  if (!isGzip(raw)) {
    if (/\.gz$/i.test(path)) throw new DatasetError(path, 'unreadable gzip: no gzip header');
    return raw;
  }
  try {
    return await gunzipAsync(raw, { maxOutputLength: limit.maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new DatasetError(path, `decompresses to more than ${limit.maxBytes} bytes, ${limit.what}`);
    }
    throw new DatasetError(path, `unreadable gzip: ${describeError(err)}`);
  }
}

/** The first bytes of a file as stored on disk. */
export async function readRawHead(path: string, length: number): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, 'r');
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } catch (err) {
    throw new DatasetError(path, `cannot read: ${describeError(err)}`);
  } finally {
    await handle?.close();
  }
}

/**
 * The first bytes of a file's contents, decompressing only the start of a gzip file, so that format
 * detection does not have to inflate a 160 MB archive just to look at its first header.
 */
export async function readContentHead(path: string): Promise<Buffer> {
  const raw = await readRawHead(path, GZIP_PEEK_BYTES);
  if (!isGzip(raw)) return raw;
  try {
    // Sync flush lets zlib hand back what it has decoded from a deliberately incomplete stream.
    return gunzipSync(raw, { finishFlush: constants.Z_SYNC_FLUSH });
  } catch (err) {
    throw new DatasetError(path, `unreadable gzip: ${describeError(err)}`);
  }
}
