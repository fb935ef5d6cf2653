import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';

import { DatasetError, loadImageDataset, type ImageDataset } from '../core/data';

jest.setTimeout(30000);

// ---- CIFAR-10 fixtures: every byte is a known function of (record, channel, row, col). ----

const CIFAR_SIDE = 32;
const cifarValue = (record: number, channel: number, row: number, col: number) =>
  (record * 41 + channel * 83 + row * 7 + col * 3) % 256;

/** Planar CHW records as the CIFAR-10 binary version stores them; `first` is the global record index. */
function cifarRecords(labels: number[], first: number): Buffer {
  const bytes = Buffer.alloc(labels.length * 3073);
  labels.forEach((label, i) => {
    const start = i * 3073;
    bytes[start] = label;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < CIFAR_SIDE; y++) {
        for (let x = 0; x < CIFAR_SIDE; x++) {
          bytes[start + 1 + c * 1024 + y * 32 + x] = cifarValue(first + i, c, y, x);
        }
      }
    }
  });
  return bytes;
}

/** The NHWC bytes the loader should produce for records first..first+count-1. */
function expectedCifarPixels(records: number[]): Uint8Array {
  const out = new Uint8Array(records.length * 3072);
  let o = 0;
  for (const record of records) {
    for (let y = 0; y < CIFAR_SIDE; y++) {
      for (let x = 0; x < CIFAR_SIDE; x++) {
        for (let c = 0; c < 3; c++) out[o++] = cifarValue(record, c, y, x);
      }
    }
  }
  return out;
}

// Global record numbers: train batches hold 0-1, 2 and 3 (data_batch_10 must come after _2); test holds 4-5.
const BATCHES = {
  'data_batch_1.bin': { labels: [3, 7], first: 0 },
  'data_batch_2.bin': { labels: [0], first: 2 },
  'data_batch_10.bin': { labels: [9], first: 3 },
  'test_batch.bin': { labels: [5, 1], first: 4 },
};

// ---- MNIST fixtures: small non-square images so that rows and columns cannot be swapped unnoticed. ----

const MNIST_ROWS = 5;
const MNIST_COLS = 4;
const mnistValue = (image: number, row: number, col: number) => (image * 50 + row * 10 + col) % 256;

function idxImages(count: number, first: number, magic = 0x00000803): Buffer {
  const bytes = Buffer.alloc(16 + count * MNIST_ROWS * MNIST_COLS);
  bytes.writeUInt32BE(magic, 0);
  bytes.writeUInt32BE(count, 4);
  bytes.writeUInt32BE(MNIST_ROWS, 8);
  bytes.writeUInt32BE(MNIST_COLS, 12);
  for (let n = 0; n < count; n++) {
    for (let y = 0; y < MNIST_ROWS; y++) {
      for (let x = 0; x < MNIST_COLS; x++) {
        bytes[16 + (n * MNIST_ROWS + y) * MNIST_COLS + x] = mnistValue(first + n, y, x);
      }
    }
  }
  return bytes;
}

function idxLabels(labels: number[]): Buffer {
  const bytes = Buffer.alloc(8 + labels.length);
  bytes.writeUInt32BE(0x00000801, 0);
  bytes.writeUInt32BE(labels.length, 4);
  bytes.set(labels, 8);
  return bytes;
}

let root: string;
let cifarDir: string;
let archive: string;
let mnistDir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'data-readers-'));
  cifarDir = join(root, 'cifar', 'cifar-10-batches-bin');
  await mkdir(cifarDir, { recursive: true });
  for (const [name, { labels, first }] of Object.entries(BATCHES)) {
    await writeFile(join(cifarDir, name), cifarRecords(labels, first));
  }
  await writeFile(join(cifarDir, 'batches.meta.txt'), 'airplane\nautomobile\n');
  archive = join(root, 'cifar-10-binary.tar.gz');
  await tar.create({ gzip: true, file: archive, cwd: join(root, 'cifar') }, ['cifar-10-batches-bin']);

  mnistDir = join(root, 'mnist');
  await mkdir(mnistDir);
  await writeFile(join(mnistDir, 'train-images-idx3-ubyte'), idxImages(3, 0));
  await writeFile(join(mnistDir, 'train-labels-idx1-ubyte'), idxLabels([4, 0, 9]));
  await writeFile(join(mnistDir, 't10k-images-idx3-ubyte.gz'), gzipSync(idxImages(2, 3)));
  await writeFile(join(mnistDir, 't10k-labels-idx1-ubyte.gz'), gzipSync(idxLabels([2, 8])));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh directory for one error case, so cases cannot mask each other. */
async function caseDir(name: string): Promise<string> {
  const dir = join(root, 'cases', name);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function datasetError(loading: Promise<unknown>): Promise<DatasetError> {
  const err = await loading.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  const { message } = err as DatasetError;
  expect(message).not.toMatch(/[\r\n]/);
  return err as DatasetError;
}

const nhwc = (ds: ImageDataset, n: number, y: number, x: number, c: number) =>
  ds.pixels[((n * ds.height + y) * ds.width + x) * ds.channels + c];

describe('CIFAR-10', () => {
  test('directory, default train split: batches in numeric order, CHW planes become NHWC', async () => {
    const ds = await loadImageDataset(cifarDir);
    expect(ds).toMatchObject({
      format: 'cifar10',
      source: cifarDir,
      height: 32,
      width: 32,
      channels: 3,
      count: 4,
    });
    expect(Array.from(ds.labels!)).toEqual([3, 7, 0, 9]);
    expect(ds.pixels).toEqual(expectedCifarPixels([0, 1, 2, 3]));
    // Pixel (row 2, col 5) of the green channel of record 1, computed by hand: (41 + 83 + 14 + 15) % 256.
    expect(nhwc(ds, 1, 2, 5, 1)).toBe(153);
    expect(ds.pixels[((1 * 32 + 2) * 32 + 5) * 3 + 1]).toBe(153);
  });

  test('test and all splits', async () => {
    const test = await loadImageDataset(cifarDir, { split: 'test' });
    expect(test.count).toBe(2);
    expect(Array.from(test.labels!)).toEqual([5, 1]);
    expect(test.pixels).toEqual(expectedCifarPixels([4, 5]));

    const all = await loadImageDataset(cifarDir, { split: 'all', format: 'cifar10' });
    expect(all.count).toBe(6);
    expect(Array.from(all.labels!)).toEqual([3, 7, 0, 9, 5, 1]);
    expect(all.pixels).toEqual(expectedCifarPixels([0, 1, 2, 3, 4, 5]));
  });

  test('a single .bin file is loaded whole, whatever its number of records', async () => {
    const ds = await loadImageDataset(join(cifarDir, 'data_batch_1.bin'), { split: 'test' });
    expect(ds.count).toBe(2);
    expect(Array.from(ds.labels!)).toEqual([3, 7]);
    expect(ds.pixels).toEqual(expectedCifarPixels([0, 1]));
  });

  test('the folder holding cifar-10-batches-bin is accepted too', async () => {
    const ds = await loadImageDataset(join(root, 'cifar'), { split: 'test' });
    expect(ds.count).toBe(2);
    expect(ds.pixels).toEqual(expectedCifarPixels([4, 5]));
  });

  test('the .tar.gz archive gives the same data as the directory, per split', async () => {
    for (const split of ['train', 'test', 'all'] as const) {
      const fromArchive = await loadImageDataset(archive, { split });
      const fromDir = await loadImageDataset(cifarDir, { split });
      expect(fromArchive.format).toBe('cifar10');
      expect(fromArchive.count).toBe(fromDir.count);
      expect(fromArchive.labels).toEqual(fromDir.labels);
      expect(fromArchive.pixels).toEqual(fromDir.pixels);
    }
  });

  test('truncated record: names the file and the trailing byte count', async () => {
    const file = join(await caseDir('cifar-truncated'), 'data_batch_1.bin');
    await writeFile(file, Buffer.concat([cifarRecords([1, 2], 0), Buffer.alloc(100)]));
    const err = await datasetError(loadImageDataset(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/truncated record/);
    expect(err.message).toMatch(/2 whole 3073-byte CIFAR-10 records plus 100 trailing bytes/);
  });

  test('a truncated record inside an archive names the archive and the entry', async () => {
    const dir = await caseDir('cifar-archive-truncated');
    await mkdir(join(dir, 'cifar-10-batches-bin'));
    await writeFile(join(dir, 'cifar-10-batches-bin', 'test_batch.bin'), Buffer.alloc(3073 + 7));
    const file = join(dir, 'broken.tar.gz');
    await tar.create({ gzip: true, file, cwd: dir }, ['cifar-10-batches-bin']);
    const err = await datasetError(loadImageDataset(file, { split: 'test' }));
    expect(err.message).toContain(`${file}:cifar-10-batches-bin/test_batch.bin`);
    expect(err.message).toMatch(/7 trailing bytes/);
  });

  test('empty dataset: zero-byte batch file, or no batches for the split', async () => {
    const dir = await caseDir('cifar-empty');
    const file = join(dir, 'data_batch_1.bin');
    await writeFile(file, Buffer.alloc(0));
    const empty = await datasetError(loadImageDataset(file));
    expect(empty.message).toContain(file);
    expect(empty.message).toMatch(/empty dataset/);
    const forced = await datasetError(loadImageDataset(file, { format: 'cifar10' }));
    expect(forced.message).toBe(`${file}: empty dataset: file has no CIFAR-10 records`);

    await writeFile(file, cifarRecords([1], 0));
    const noTest = await datasetError(loadImageDataset(dir, { split: 'test' }));
    expect(noTest.message).toContain(dir);
    expect(noTest.message).toMatch(/empty dataset.*test_batch\.bin.*'test'/);
  });

  test('a label outside 0..9 is rejected as not CIFAR-10', async () => {
    const file = join(await caseDir('cifar-label'), 'data_batch_1.bin');
    await writeFile(file, cifarRecords([1, 12], 0));
    const err = await datasetError(loadImageDataset(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/record 1 has label 12/);
  });

  test('unreadable gzip: corrupt and truncated archives', async () => {
    const dir = await caseDir('cifar-bad-gzip');
    const corrupt = join(dir, 'corrupt.tar.gz');
    const good = await readFile(archive);
    const damaged = Buffer.from(good);
    damaged.fill(0xff, 10, 200); // keep the gzip magic, wreck the deflate stream
    await writeFile(corrupt, damaged);
    const err = await datasetError(loadImageDataset(corrupt));
    expect(err.message).toContain(corrupt);
    expect(err.message).toMatch(/unreadable gzip/);

    const truncated = join(dir, 'truncated.tar.gz');
    await writeFile(truncated, good.subarray(0, Math.floor(good.length / 2)));
    const cut = await datasetError(loadImageDataset(truncated, { format: 'cifar10' }));
    expect(cut.message).toContain(truncated);
    expect(cut.message).toMatch(/unreadable gzip/);
  });

  test('an archive without CIFAR-10 batches is an empty dataset', async () => {
    const dir = await caseDir('cifar-archive-empty');
    await writeFile(join(dir, 'readme.txt'), 'nothing here');
    const file = join(dir, 'other.tar.gz');
    await tar.create({ gzip: true, file, cwd: dir }, ['readme.txt']);
    const err = await datasetError(loadImageDataset(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/empty dataset: archive has no CIFAR-10/);
  });
});

describe('MNIST', () => {
  const expectedMnist = (images: number[]) => {
    const out: number[] = [];
    for (const n of images) {
      for (let y = 0; y < MNIST_ROWS; y++) for (let x = 0; x < MNIST_COLS; x++) out.push(mnistValue(n, y, x));
    }
    return Uint8Array.from(out);
  };

  test('directory, train split from raw files, with labels', async () => {
    const ds = await loadImageDataset(mnistDir);
    expect(ds).toMatchObject({ format: 'mnist', height: 5, width: 4, channels: 1, count: 3 });
    expect(Array.from(ds.labels!)).toEqual([4, 0, 9]);
    expect(ds.pixels).toEqual(expectedMnist([0, 1, 2]));
    // Image 2, row 3, col 1: 100 + 30 + 1.
    expect(nhwc(ds, 2, 3, 1, 0)).toBe(131);
  });

  test('test split from gzipped files, and all = train then test', async () => {
    const test = await loadImageDataset(mnistDir, { split: 'test', format: 'mnist' });
    expect(test.count).toBe(2);
    expect(Array.from(test.labels!)).toEqual([2, 8]);
    expect(test.pixels).toEqual(expectedMnist([3, 4]));

    const all = await loadImageDataset(mnistDir, { split: 'all' });
    expect(all.count).toBe(5);
    expect(Array.from(all.labels!)).toEqual([4, 0, 9, 2, 8]);
    expect(all.pixels).toEqual(expectedMnist([0, 1, 2, 3, 4]));
  });

  test('a single images file picks up the labels file beside it', async () => {
    const ds = await loadImageDataset(join(mnistDir, 't10k-images-idx3-ubyte.gz'));
    expect(ds.format).toBe('mnist');
    expect(Array.from(ds.labels!)).toEqual([2, 8]);
    expect(ds.pixels).toEqual(expectedMnist([3, 4]));
  });

  test('an IDX file with an unfamiliar name is recognised by its magic; no labels beside it', async () => {
    const file = join(await caseDir('mnist-renamed'), 'digits.idx');
    await writeFile(file, idxImages(2, 0));
    const ds = await loadImageDataset(file);
    expect(ds.format).toBe('mnist');
    expect(ds.count).toBe(2);
    expect(ds.labels).toBeUndefined();
    expect(ds.pixels).toEqual(expectedMnist([0, 1]));
  });

  test('bad magic', async () => {
    const file = join(await caseDir('mnist-magic'), 'train-images-idx3-ubyte');
    await writeFile(file, idxImages(1, 0, 0x00000804));
    const err = await datasetError(loadImageDataset(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/bad magic 0x00000804, expected 0x00000803/);
  });

  test('labels count must match images count', async () => {
    const dir = await caseDir('mnist-labels');
    await writeFile(join(dir, 'train-images-idx3-ubyte'), idxImages(3, 0));
    const labels = join(dir, 'train-labels-idx1-ubyte');
    await writeFile(labels, idxLabels([1, 2]));
    const err = await datasetError(loadImageDataset(dir));
    expect(err.message).toContain(labels);
    expect(err.message).toMatch(/has 2 labels but .*train-images-idx3-ubyte has 3 images/);
  });

  test('truncated pixel data and trailing bytes', async () => {
    const dir = await caseDir('mnist-truncated');
    const short = join(dir, 'train-images-idx3-ubyte');
    await writeFile(short, idxImages(3, 0).subarray(0, 16 + 50));
    const err = await datasetError(loadImageDataset(short));
    expect(err.message).toContain(short);
    expect(err.message).toMatch(
      /truncated: header promises 3 images of 5x4 \(60 bytes\) but only 50 bytes follow/,
    );

    const long = join(dir, 't10k-images-idx3-ubyte');
    await writeFile(long, Buffer.concat([idxImages(1, 0), Buffer.alloc(3)]));
    expect((await datasetError(loadImageDataset(long))).message).toMatch(/3 trailing bytes after 1 images/);
  });

  test('unreadable gzip: damaged stream, and a .gz name without gzip data', async () => {
    const dir = await caseDir('mnist-gzip');
    const damaged = join(dir, 'train-images-idx3-ubyte.gz');
    const bytes = gzipSync(idxImages(3, 0));
    bytes.fill(0xff, 10, bytes.length - 8);
    await writeFile(damaged, bytes);
    const err = await datasetError(loadImageDataset(damaged, { format: 'mnist' }));
    expect(err.message).toContain(damaged);
    expect(err.message).toMatch(/unreadable gzip/);

    const notGzip = join(dir, 't10k-images-idx3-ubyte.gz');
    await writeFile(notGzip, idxImages(1, 0));
    expect((await datasetError(loadImageDataset(notGzip))).message).toMatch(
      /unreadable gzip: no gzip header/,
    );
  });

  test('a labels file on its own is refused with a hint', async () => {
    const file = join(mnistDir, 'train-labels-idx1-ubyte');
    const err = await datasetError(loadImageDataset(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/labels file/);
  });

  test('empty dataset: zero images in the header', async () => {
    const file = join(await caseDir('mnist-zero'), 'train-images-idx3-ubyte');
    await writeFile(file, idxImages(0, 0));
    const err = await datasetError(loadImageDataset(file));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/empty dataset/);
  });
});

describe('sources and options', () => {
  test('nonexistent path', async () => {
    const missing = join(root, 'no', 'such', 'dataset');
    const err = await datasetError(loadImageDataset(missing));
    expect(err.message).toBe(`${missing}: no such file or directory`);
    expect(err.file).toBe(missing);
  });

  test('unknown format: unrecognised file and directory', async () => {
    const dir = await caseDir('unknown');
    const file = join(dir, 'notes.txt');
    await writeFile(file, 'just some text, long enough to not be anything in particular');
    const fileErr = await datasetError(loadImageDataset(file));
    expect(fileErr.message).toContain(file);
    expect(fileErr.message).toMatch(/unknown format/);

    const dirErr = await datasetError(loadImageDataset(dir));
    expect(dirErr.message).toContain(dir);
    expect(dirErr.message).toMatch(/unknown format/);
  });

  test('empty dataset: an empty directory or an empty file', async () => {
    const dir = await caseDir('empty-dir');
    expect((await datasetError(loadImageDataset(dir))).message).toBe(
      `${dir}: empty dataset: directory is empty`,
    );
    const file = join(await caseDir('empty-file'), 'blank');
    await writeFile(file, Buffer.alloc(0));
    expect((await datasetError(loadImageDataset(file))).message).toMatch(/empty dataset/);
  });

  test('invalid option values from untyped callers', async () => {
    const badFormat = await datasetError(loadImageDataset(cifarDir, { format: 'jpeg' as never }));
    expect(badFormat.message).toMatch(/unknown format 'jpeg'/);
    const badSplit = await datasetError(loadImageDataset(cifarDir, { split: 'validation' as never }));
    expect(badSplit.message).toMatch(/unknown split 'validation'/);
  });

  test('a forced format that does not fit the source', async () => {
    const file = join(cifarDir, 'test_batch.bin');
    const err = await datasetError(loadImageDataset(file, { format: 'png-dir' }));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/not a directory/);
  });
});
