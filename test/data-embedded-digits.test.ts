import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EMBEDDED_DIGITS, loadImageDataset } from '../core/data';
import { detectFormat } from '../core/data/detect-format';

const digitsDir = join(dirname(require.resolve('mnist/package.json')), 'src', 'digits');
const rawClass = (d: number): number[] =>
  (JSON.parse(readFileSync(join(digitsDir, `${d}.json`), 'utf8')) as { data: number[] }).data;

describe('embedded MNIST digits', () => {
  it('is detected by its URI and unknown embedded names are refused in one line', async () => {
    expect(await detectFormat(EMBEDDED_DIGITS)).toBe('embedded-digits');
    await expect(detectFormat('embedded:cats')).rejects.toThrow(
      /^embedded:cats: unknown embedded dataset \(the one shipped is embedded:mnist-digits\)$/,
    );
  });

  it('splits every tenth image of each class off as the held-out set, with labels, and loses none', async () => {
    const [train, test, all] = await Promise.all(
      (['train', 'test', 'all'] as const).map((split) => loadImageDataset(EMBEDDED_DIGITS, { split })),
    );
    for (const ds of [train, test, all]) {
      expect([ds.height, ds.width, ds.channels, ds.format]).toEqual([28, 28, 1, 'embedded-digits']);
      expect(ds.labels).toHaveLength(ds.count);
      expect(ds.pixels).toHaveLength(ds.count * 784);
    }
    expect(all.count).toBe(10_000);
    expect(train.count + test.count).toBe(all.count);
    const perClass = (labels: Uint8Array) =>
      Array.from({ length: 10 }, (_, d) => labels.filter((l) => l === d).length);
    const rawCounts = Array.from({ length: 10 }, (_, d) => rawClass(d).length / 784);
    expect(perClass(all.labels!)).toEqual(rawCounts);
    expect(perClass(test.labels!)).toEqual(rawCounts.map((n) => Math.floor(n / 10)));
  });

  it('recovers the 8-bit pixels exactly: every stored float is within 0.0006 of the byte / 255', async () => {
    const all = await loadImageDataset(EMBEDDED_DIGITS, { split: 'all' });
    let offset = 0;
    let worst = 0;
    for (let d = 0; d < 10; d++) {
      const raw = rawClass(d);
      for (let i = 0; i < raw.length; i++)
        worst = Math.max(worst, Math.abs(all.pixels[offset + i] / 255 - raw[i]));
      offset += raw.length;
    }
    expect(offset).toBe(all.pixels.length);
    expect(worst).toBeLessThan(0.0006);
    // Real digits: mostly black background with bright strokes, not noise.
    const mean = all.pixels.reduce((a, b) => a + b, 0) / all.pixels.length;
    expect(mean).toBeGreaterThan(20);
    expect(mean).toBeLessThan(45);
  });

  it('keeps the held-out images out of the training split', async () => {
    const [train, test] = await Promise.all(
      (['train', 'test'] as const).map((split) => loadImageDataset(EMBEDDED_DIGITS, { split })),
    );
    const key = (px: Uint8Array, i: number) =>
      Buffer.from(px.subarray(i * 784, (i + 1) * 784)).toString('base64');
    const trainSet = new Set(Array.from({ length: train.count }, (_, i) => key(train.pixels, i)));
    const overlap = Array.from({ length: test.count }, (_, i) => key(test.pixels, i)).filter((k) =>
      trainSet.has(k),
    );
    // MNIST itself has a handful of exact duplicates; a split by index keeps them to that.
    expect(overlap.length).toBeLessThan(5);
  });
});
