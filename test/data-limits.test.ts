/**
 * Hostile or mistaken dataset files are refused from what they declare, before they are decoded: a PNG
 * whose header claims 8000x8000 pixels, a gzip bomb behind an IDX header that promises a few bytes, a
 * CIFAR-10 batch or tar entry far beyond any real one. Each load runs in a child process whose peak RSS
 * is measured, so "before decoding" is checked by the memory it did not take.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { finished } from 'node:stream/promises';
import { createDeflate, createGzip, crc32 } from 'node:zlib';
import { Header } from 'tar';

jest.setTimeout(120_000);

const REPO = resolve(__dirname, '..');
/** Zero bytes streamed through a compressor in 1 MiB chunks: a large output from a tiny file. */
const ZEROS = Buffer.alloc(1 << 20);
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'data-limits-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Loads `source` with loadImageDataset in a fresh node process; its error message and peak RSS. */
function loadInChild(source: string): { error: string | null; count: number | null; peakRssMb: number } {
  const script = `
    const { loadImageDataset } = require('./core/data');
    loadImageDataset(${JSON.stringify(source)}).then(
      (ds) => ({ error: null, count: ds.count }),
      (e) => ({ error: e.message, count: null }),
    ).then((r) => console.log(JSON.stringify({ ...r, peakRssMb: process.resourceUsage().maxRSS / 1024 })));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: REPO, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loader process failed: ${r.stderr}`);
  const result = JSON.parse(r.stdout.trim().split('\n').pop()!);
  console.log(`${source}: peak RSS ${result.peakRssMb.toFixed(0)} MB`);
  return result;
}

/** The same load of a tiny valid dataset: the process's own footprint, to measure growth against. */
let baselineMb = 0;
beforeAll(async () => {
  const dir = join(root, 'baseline');
  await mkdir(dir);
  await writeFile(join(dir, 'train-images-idx3-ubyte'), idx(1, 2, 2, Buffer.alloc(4)));
  baselineMb = loadInChild(dir).peakRssMb;
});

function idx(count: number, rows: number, cols: number, pixels: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x803, 0);
  header.writeUInt32BE(count, 4);
  header.writeUInt32BE(rows, 8);
  header.writeUInt32BE(cols, 12);
  return Buffer.concat([header, pixels]);
}

/** Writes `head` then `zeroMiB` MiB of zeros through `compressor` into `file`. */
async function writeCompressed(
  file: string,
  compressor: ReturnType<typeof createGzip>,
  head: Buffer,
  zeroMiB: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  compressor.on('data', (c: Buffer) => chunks.push(c));
  compressor.write(head);
  for (let i = 0; i < zeroMiB; i++) {
    if (!compressor.write(ZEROS)) await new Promise((r) => compressor.once('drain', r));
  }
  compressor.end();
  await finished(compressor);
  const bytes = Buffer.concat(chunks);
  if (file) await writeFile(file, bytes);
  return bytes;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([length, typed, crc]);
}

/** A valid, all-black RGB PNG of width x height whose file is tiny (its rows deflate to almost nothing). */
async function blackPng(file: string, width: number, height: number): Promise<void> {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, adaptive filtering, no interlace
  const deflate = createDeflate();
  const chunks: Buffer[] = [];
  deflate.on('data', (c: Buffer) => chunks.push(c));
  const row = Buffer.alloc(1 + width * 3); // filter byte 0, then black pixels
  for (let y = 0; y < height; y++) {
    if (!deflate.write(row)) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await finished(deflate);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  await writeFile(
    file,
    Buffer.concat([
      signature,
      pngChunk('IHDR', ihdr),
      pngChunk('IDAT', Buffer.concat(chunks)),
      pngChunk('IEND', Buffer.alloc(0)),
    ]),
  );
}

test('an 8000x8000 PNG is refused from its header, before its 256 MB of pixels are decoded', async () => {
  const dir = join(root, 'png-huge');
  await mkdir(dir);
  await blackPng(join(dir, 'a.png'), 8000, 8000);
  const r = loadInChild(dir);
  expect(r.error).toMatch(/a\.png: image is 8000x8000 pixels; at most 4096x4096 are accepted/);
  expect(r.peakRssMb - baselineMb).toBeLessThan(64);
});

test('a PNG whose size differs from the first is refused before it is decoded', async () => {
  const dir = join(root, 'png-mixed');
  await mkdir(dir);
  await blackPng(join(dir, 'a.png'), 8, 8);
  await blackPng(join(dir, 'b.png'), 4000, 4000);
  const r = loadInChild(dir);
  expect(r.error).toMatch(/b\.png: wrong image size: 4000x4000 but the first image .*a\.png is 8x8/);
  expect(r.peakRssMb - baselineMb).toBeLessThan(32);
});

test('a gzip bomb behind an IDX header is cut off at the size the header declares', async () => {
  const dir = join(root, 'idx-bomb');
  await mkdir(dir);
  // One 28x28 image declared (800 bytes in all), 256 MiB of zeros behind it.
  const file = join(dir, 'train-images-idx3-ubyte.gz');
  await writeCompressed(file, createGzip(), idx(1, 28, 28, Buffer.alloc(0)), 256);
  const r = loadInChild(dir);
  expect(r.error).toMatch(
    /train-images-idx3-ubyte\.gz: decompresses to more than 800 bytes, the size its IDX header declares/,
  );
  expect(r.peakRssMb - baselineMb).toBeLessThan(64);
});

test('an IDX header declaring images beyond the side limit is refused before anything is inflated', async () => {
  const dir = join(root, 'idx-wide');
  await mkdir(dir);
  await writeCompressed(
    join(dir, 'train-images-idx3-ubyte.gz'),
    createGzip(),
    idx(1, 5000, 5000, Buffer.alloc(0)),
    24,
  );
  const r = loadInChild(dir);
  expect(r.error).toMatch(/train-images-idx3-ubyte\.gz: images are 5000x5000 pixels; at most 4096x4096/);
  expect(r.peakRssMb - baselineMb).toBeLessThan(16);
});

test('a gzipped CIFAR-10 batch that inflates beyond 50,000 records is cut off there', async () => {
  const dir = join(root, 'cifar-bomb');
  await mkdir(dir);
  await writeCompressed(join(dir, 'data_batch_1.bin.gz'), createGzip(), Buffer.alloc(0), 400);
  const r = loadInChild(dir);
  expect(r.error).toMatch(
    /data_batch_1\.bin\.gz: decompresses to more than 153650000 bytes, the most a batch may hold \(50000 CIFAR-10 records\)/,
  );
  // The cut-off buffer itself (154 MB) is the most it may hold.
  expect(r.peakRssMb - baselineMb).toBeLessThan(260);
});

test('a tar entry declaring more than 50,000 CIFAR-10 records is refused from its header', async () => {
  const dir = join(root, 'tar-bomb');
  await mkdir(dir);
  const size = 400 * (1 << 20);
  const header = new Header({
    path: 'cifar-10-batches-bin/data_batch_1.bin',
    size,
    mode: 0o644,
    type: 'File',
    mtime: new Date(0),
  });
  const block = Buffer.alloc(512);
  header.encode(block, 0);
  await writeCompressed(join(dir, 'cifar-10-binary.tar.gz'), createGzip(), block, 400);
  const r = loadInChild(join(dir, 'cifar-10-binary.tar.gz'));
  expect(r.error).toMatch(
    /data_batch_1\.bin: 419430400 bytes, more than 153650000 bytes, the most a batch may hold \(50000 CIFAR-10 records\)/,
  );
  expect(r.peakRssMb - baselineMb).toBeLessThan(64);
});
