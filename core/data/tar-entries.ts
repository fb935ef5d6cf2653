import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';

import { DatasetError, describeError } from './errors';
import { isGzip, readRawHead } from './file-bytes';
import type { SizeLimit } from './limits';

/** A tar header's "ustar" magic sits at this offset; it is how a (decompressed) tar is recognised. */
const USTAR_OFFSET = 257;

export function looksLikeTar(head: Uint8Array): boolean {
  return Buffer.from(head.subarray(USTAR_OFFSET, USTAR_OFFSET + 5)).toString('latin1') === 'ustar';
}

function describeArchiveError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (code.startsWith('Z_')) return `unreadable gzip: ${describeError(err)}`;
  if (code.startsWith('TAR_')) return `unreadable tar archive: ${describeError(err)}`;
  return `cannot read archive: ${describeError(err)}`;
}

/**
 * Reads the regular files whose path `wanted` accepts out of a tar or tar.gz archive, in memory: nothing
 * is extracted to disk, and unwanted entries are skipped without being kept. A wanted entry whose header
 * declares more than `limit` bytes is refused before any of it is kept.
 *
 * We gunzip ourselves rather than letting tar sniff the compression: that way gzip damage surfaces as a
 * zlib error we can name, and tar's decompression-ratio guard (meant for extracting untrusted archives)
 * cannot reject a legitimately compressible dataset.
 */
export async function readTarEntries(
  archive: string,
  wanted: (entryPath: string) => boolean,
  limit: SizeLimit,
): Promise<Map<string, Buffer>> {
  const gzipped = isGzip(await readRawHead(archive, 2));
  const parser = new Parser({ strict: true, brotli: false, zstd: false });
  const files = new Map<string, Buffer>();
  const reads: Promise<void>[] = [];
  const input = createReadStream(archive);
  let refused: DatasetError | null = null;
  parser.on('entry', (entry: ReadEntry) => {
    if (entry.type !== 'File' || !wanted(entry.path)) {
      entry.resume();
      return;
    }
    if (entry.size > limit.maxBytes) {
      refused ??= new DatasetError(
        `${archive}:${entry.path}`,
        `${entry.size} bytes, more than ${limit.maxBytes} bytes, ${limit.what}`,
      );
      entry.resume();
      input.destroy(refused);
      return;
    }
    reads.push(entry.concat().then((bytes) => void files.set(entry.path, bytes)));
  });
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', reject);
  });
  const feedParser = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of source) {
      // An aborted parser never drains; racing with `parsed` surfaces its error instead of hanging.
      if (!parser.write(chunk)) await Promise.race([once(parser, 'drain'), parsed]);
    }
    parser.end();
  };
  try {
    await Promise.all([
      gzipped ? pipeline(input, createGunzip(), feedParser) : pipeline(input, feedParser),
      parsed,
    ]);
    await Promise.all(reads);
  } catch (err) {
    throw refused ?? new DatasetError(archive, describeArchiveError(err));
  }
  return files;
}
