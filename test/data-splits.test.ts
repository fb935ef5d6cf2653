/**
 * Prepared splits in the store: labels kept beside the shards (and manifests written before labels still
 * load), the declared held-out split of each source (and none where a source declares none), and the
 * dataset fingerprint that names per-dataset caches.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DatasetError,
  EMBEDDED_DIGITS,
  datasetFingerprint,
  loadHeldOutSplit,
  prepareSplits,
  readShardedSplit,
  splitIntoShards,
  writePngGrid,
  writeShardedSplit,
} from '../core/data';
import { openStore } from '../store';

const scratch = mkdtempSync(join(tmpdir(), 'ddpm-splits-'));
const store = openStore(join(scratch, 'store'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const images = (count: number, labels?: number[]) => ({
  source: 'test',
  count,
  height: 2,
  width: 2,
  channels: 1,
  pixels: Uint8Array.from({ length: count * 4 }, (_, i) => (i * 37) % 256),
  ...(labels && { labels: Uint8Array.from(labels) }),
});

function idx(dir: string, prefix: string, labels: number[]): void {
  const n = labels.length;
  const img = Buffer.alloc(16 + n * 4);
  img.writeUInt32BE(0x00000803, 0);
  img.writeUInt32BE(n, 4);
  img.writeUInt32BE(2, 8);
  img.writeUInt32BE(2, 12);
  for (let i = 0; i < n * 4; i++) img[16 + i] = (i * 11) % 256;
  const lab = Buffer.alloc(8 + n);
  lab.writeUInt32BE(0x00000801, 0);
  lab.writeUInt32BE(n, 4);
  lab.set(labels, 8);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${prefix}-images-idx3-ubyte`), img);
  writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte`), lab);
}

test('labels round-trip through the store beside the shards, checked against the manifest', async () => {
  const manifest = await writeShardedSplit(store, 'a/dataset/manifest.json', images(5, [1, 0, 4, 4, 2]));
  expect(manifest.labels?.name).toBe('labels.u8');
  const { images: back } = await readShardedSplit(store, 'a/dataset/manifest.json');
  expect(Array.from(back.labels!)).toEqual([1, 0, 4, 4, 2]);
  await store.put('a/dataset/labels.u8', Uint8Array.from([1, 0, 4, 4, 3]));
  await expect(readShardedSplit(store, 'a/dataset/manifest.json')).rejects.toThrow(
    /labels\.u8: labels size or checksum does not match the manifest/,
  );
  expect(() => splitIntoShards(images(3, [1, 2]))).toThrow(DatasetError);
});

test('a manifest written before labels were kept still loads, without labels', async () => {
  // Exactly what earlier versions wrote: no labels, no heldOut.
  const pixels = images(3).pixels;
  const sha256 = createHash('sha256').update(pixels).digest('hex');
  const old = {
    format: 'ddpm-image-shards',
    version: 1,
    source: '/data/old',
    count: 3,
    height: 2,
    width: 2,
    channels: 1,
    shards: [{ name: 'shard-00000.u8', count: 3, sha256 }],
  };
  await store.put('old/dataset/shard-00000.u8', pixels);
  await store.put('old/dataset/manifest.json', JSON.stringify(old));
  const { manifest, images: back } = await readShardedSplit(store, 'old/dataset/manifest.json');
  expect(back.labels).toBeUndefined();
  expect(manifest.heldOut).toBeUndefined();
  expect(back.pixels).toEqual(pixels);
});

test('the fingerprint names the contents, not the run', async () => {
  const a = await writeShardedSplit(store, 'r1/dataset/manifest.json', images(4, [0, 1, 0, 1]));
  const b = await writeShardedSplit(store, 'r2/dataset/manifest.json', images(4, [0, 1, 0, 1]));
  const c = await writeShardedSplit(store, 'r3/dataset/manifest.json', images(4, [0, 1, 1, 1]));
  expect(datasetFingerprint(a)).toBe(datasetFingerprint(b));
  expect(datasetFingerprint(c)).not.toBe(datasetFingerprint(a));
  expect(datasetFingerprint(a)).toMatch(/^[0-9a-f]{16}$/);
});

describe('declared held-out splits', () => {
  test('the embedded digits: every tenth image of each class, with labels', async () => {
    const heldOut = await loadHeldOutSplit(EMBEDDED_DIGITS);
    expect(heldOut?.count).toBeGreaterThan(950);
    expect(heldOut?.count).toBeLessThan(1050);
    expect(new Set(heldOut?.labels).size).toBe(10);
  });

  test('MNIST: the t10k files of a directory; a single IDX file declares none', async () => {
    const dir = join(scratch, 'mnist');
    idx(dir, 'train', [1, 2, 3]);
    idx(dir, 't10k', [7, 8]);
    const heldOut = await loadHeldOutSplit(dir);
    expect(Array.from(heldOut!.labels!)).toEqual([7, 8]);
    expect(await loadHeldOutSplit(join(dir, 'train-images-idx3-ubyte'))).toBeNull();
    const trainOnly = join(scratch, 'mnist-train-only');
    idx(trainOnly, 'train', [1]);
    expect(await loadHeldOutSplit(trainOnly)).toBeNull();
  });

  test('a folder of PNGs declares none', async () => {
    const dir = join(scratch, 'pngs');
    mkdirSync(dir, { recursive: true });
    await writePngGrid(join(dir, 'a.png'), new Uint8Array(12), 1, 2, 2, 3, { padding: 0 });
    expect(await loadHeldOutSplit(dir)).toBeNull();
  });

  test('prepareSplits writes the held-out split first and points the training manifest at it', async () => {
    const dir = join(scratch, 'mnist-prepare');
    idx(dir, 'train', [1, 2, 3, 4]);
    idx(dir, 't10k', [5, 6]);
    const keys = { train: 'p/dataset/manifest.json', heldOut: 'p/dataset/test/manifest.json' };
    const written: string[] = [];
    const r = await prepareSplits(store, keys, { uri: dir, localPath: dir }, (name) => written.push(name));
    expect(r.train.heldOut).toBe('test/manifest.json');
    expect(r.heldOut?.count).toBe(2);
    expect(written).toEqual(['shard-00000.u8', 'labels.u8', 'shard-00000.u8', 'labels.u8']);
    const heldOut = await readShardedSplit(store, keys.heldOut);
    expect(Array.from(heldOut.images.labels!)).toEqual([5, 6]);
    const none = await prepareSplits(
      store,
      { train: 'q/dataset/manifest.json', heldOut: 'q/dataset/test/manifest.json' },
      { uri: 'x', localPath: join(dir, 'train-images-idx3-ubyte') },
    );
    expect(none.train.heldOut).toBeNull();
    expect(await store.exists('q/dataset/test/manifest.json')).toBe(false);
  });
});
