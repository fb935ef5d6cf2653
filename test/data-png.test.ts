import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG, type ColorType } from 'pngjs';

import {
  DatasetError,
  encodePngGrid,
  loadImageDataset,
  toFloatRange,
  toUint8Range,
  writePngGrid,
} from '../core/data';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'data-png-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function caseDir(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Writes a PNG of the given colour type; `rgba(x, y)` gives the pixel, of which the type keeps what it can. */
async function writePng(
  file: string,
  width: number,
  height: number,
  colorType: ColorType,
  rgba: (x: number, y: number) => [number, number, number, number],
): Promise<void> {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) png.data.set(rgba(x, y), (y * width + x) * 4);
  }
  // Input is RGBA; pngjs averages R, G, B for gray output (so gray fixtures use R=G=B) and composites
  // alpha only when the output has none (fixtures without alpha are opaque, so nothing changes).
  await writeFile(file, PNG.sync.write(png, { colorType, inputColorType: 6, inputHasAlpha: true }));
}

const colour = (image: number) => (x: number, y: number) =>
  [image * 60 + x, 100 + y * 10 + x, 255 - image * 30 - y, 255] as [number, number, number, number];
const gray = (image: number) => (x: number, y: number) => {
  const v = image * 70 + y * 6 + x;
  return [v, v, v, 255] as [number, number, number, number];
};

async function datasetError(loading: Promise<unknown>): Promise<DatasetError> {
  const err = await loading.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  expect((err as Error).message).not.toMatch(/[\r\n]/);
  return err as DatasetError;
}

describe('PNG directory', () => {
  const W = 6;
  const H = 4;

  test('RGB PNGs sorted by name, non-PNG files ignored, exact NHWC pixels', async () => {
    const dir = await caseDir('rgb');
    // Written out of order: the loader must sort a, b, c.
    await writePng(join(dir, 'b.png'), W, H, 2, colour(1));
    await writePng(join(dir, 'c.PNG'), W, H, 2, colour(2));
    await writePng(join(dir, 'a.png'), W, H, 2, colour(0));
    await writeFile(join(dir, 'notes.txt'), 'not an image');

    const ds = await loadImageDataset(dir);
    expect(ds).toMatchObject({ format: 'png-dir', source: dir, height: H, width: W, channels: 3, count: 3 });
    expect(ds.labels).toBeUndefined();
    for (let n = 0; n < 3; n++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const at = ((n * H + y) * W + x) * 3;
          expect(Array.from(ds.pixels.subarray(at, at + 3))).toEqual(colour(n)(x, y).slice(0, 3));
        }
      }
    }
    // Image b (index 1), row 2, col 5: [60 + 5, 100 + 20 + 5, 255 - 30 - 2].
    expect(Array.from(ds.pixels.subarray(((1 * H + 2) * W + 5) * 3, ((1 * H + 2) * W + 5) * 3 + 3))).toEqual([
      65, 125, 223,
    ]);
  });

  test('alpha is dropped, not composited onto a background', async () => {
    const dir = await caseDir('rgba');
    await writePng(join(dir, 'x.png'), 2, 1, 6, (x) => [10 + x, 20, 30, x === 0 ? 0 : 128]);
    const ds = await loadImageDataset(dir, { format: 'png-dir' });
    expect(ds.channels).toBe(3);
    expect(Array.from(ds.pixels)).toEqual([10, 20, 30, 11, 20, 30]);
  });

  test('all-grayscale PNGs give one channel', async () => {
    const dir = await caseDir('gray');
    await writePng(join(dir, '0.png'), W, H, 0, gray(0));
    await writePng(join(dir, '1.png'), W, H, 4, gray(1)); // gray + alpha is still gray
    const ds = await loadImageDataset(dir);
    expect(ds.channels).toBe(1);
    expect(ds.count).toBe(2);
    expect(ds.pixels[(1 * H + 3) * W + 2]).toBe(70 + 18 + 2);
    expect(ds.pixels[0]).toBe(0);
  });

  test('mixed gray and colour: gray images are replicated into three channels', async () => {
    const dir = await caseDir('mixed');
    await writePng(join(dir, 'a-gray.png'), W, H, 0, gray(2));
    await writePng(join(dir, 'b-colour.png'), W, H, 2, colour(1));
    const ds = await loadImageDataset(dir);
    expect(ds.channels).toBe(3);
    const grayAt = ((0 * H + 1) * W + 4) * 3;
    const v = 140 + 6 + 4;
    expect(Array.from(ds.pixels.subarray(grayAt, grayAt + 3))).toEqual([v, v, v]);
    const colourAt = ((1 * H + 1) * W + 4) * 3;
    expect(Array.from(ds.pixels.subarray(colourAt, colourAt + 3))).toEqual(colour(1)(4, 1).slice(0, 3));
  });

  test('wrong image size names the file and both sizes', async () => {
    const dir = await caseDir('sizes');
    await writePng(join(dir, 'a.png'), W, H, 2, colour(0));
    const odd = join(dir, 'b.png');
    await writePng(odd, 8, 4, 2, colour(1));
    const err = await datasetError(loadImageDataset(dir));
    expect(err.message).toContain(odd);
    expect(err.message).toMatch(/wrong image size: 8x4 but the first image .*a\.png is 6x4/);
  });

  test('a corrupt PNG, an empty PNG directory, and a single PNG file', async () => {
    const dir = await caseDir('corrupt');
    await writePng(join(dir, 'a.png'), W, H, 2, colour(0));
    const broken = join(dir, 'b.png');
    const bytes = await readFile(join(dir, 'a.png'));
    await writeFile(broken, bytes.subarray(0, bytes.length - 30));
    const err = await datasetError(loadImageDataset(dir));
    expect(err.message).toContain(broken);
    expect(err.message).toMatch(/unreadable PNG/);

    const textOnly = await caseDir('text-only');
    await writeFile(join(textOnly, 'readme.md'), '# nothing');
    const empty = await datasetError(loadImageDataset(textOnly, { format: 'png-dir' }));
    expect(empty.message).toBe(`${textOnly}: empty dataset: directory has no .png files`);

    const single = await datasetError(loadImageDataset(join(dir, 'a.png')));
    expect(single.message).toMatch(/single PNG; load the directory/);
  });
});

describe('PNG grid', () => {
  /** Image n, pixel (y, x), channel c: distinct for every tile, row, column and channel. */
  const tileValue = (n: number, y: number, x: number, c: number) => (n * 40 + y * 9 + x * 3 + c * 80) % 256;

  function images(count: number, height: number, width: number, channels: number): Uint8Array {
    const out = new Uint8Array(count * height * width * channels);
    let o = 0;
    for (let n = 0; n < count; n++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) for (let c = 0; c < channels; c++) out[o++] = tileValue(n, y, x, c);
      }
    }
    return out;
  }

  test('RGB: tiles land at their grid positions, padding and empty slots are black', () => {
    const [count, h, w] = [5, 3, 4];
    const decoded = PNG.sync.read(
      encodePngGrid(images(count, h, w, 3), count, h, w, 3, { columns: 3, padding: 1 }),
    );
    expect(decoded.width).toBe(3 * (w + 1) + 1);
    expect(decoded.height).toBe(2 * (h + 1) + 1);
    expect(decoded.color).toBe(true);
    expect(decoded.alpha).toBe(false);
    const rgbAt = (gx: number, gy: number) =>
      Array.from(decoded.data.subarray((gy * 16 + gx) * 4, (gy * 16 + gx) * 4 + 3));
    for (let n = 0; n < count; n++) {
      const top = 1 + Math.floor(n / 3) * (h + 1);
      const left = 1 + (n % 3) * (w + 1);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          expect(rgbAt(left + x, top + y)).toEqual([0, 1, 2].map((c) => tileValue(n, y, x, c)));
        }
      }
    }
    // Tile 4 (grid row 1, column 1), pixel (2, 3), starts at x = 1 + 5 + 3, y = 1 + 4 + 2.
    expect(rgbAt(9, 7)).toEqual([
      (160 + 18 + 9) % 256,
      (160 + 18 + 9 + 80) % 256,
      (160 + 18 + 9 + 160) % 256,
    ]);
    expect(rgbAt(0, 0)).toEqual([0, 0, 0]); // border
    expect(rgbAt(5, 2)).toEqual([0, 0, 0]); // gap between tiles 0 and 1
    expect(rgbAt(12, 6)).toEqual([0, 0, 0]); // empty sixth slot
  });

  test('grayscale: written as a gray PNG, default columns and padding', () => {
    const [count, h, w] = [4, 2, 3];
    const decoded = PNG.sync.read(encodePngGrid(images(count, h, w, 1), count, h, w, 1));
    // Default: ceil(sqrt(4)) = 2 columns, padding 2.
    expect(decoded.width).toBe(2 * (w + 2) + 2);
    expect(decoded.height).toBe(2 * (h + 2) + 2);
    expect(decoded.color).toBe(false);
    const grayAt = (gx: number, gy: number) => decoded.data[(gy * decoded.width + gx) * 4];
    // Tile 3 (row 1, col 1) starts at (2 + 5, 2 + 4); its pixel (1, 2):
    expect(grayAt(7 + 2, 6 + 1)).toBe(tileValue(3, 1, 2, 0));
    expect(grayAt(2, 2)).toBe(tileValue(0, 0, 0, 0));
    expect(grayAt(2 + 5, 2)).toBe(tileValue(1, 0, 0, 0));
    expect(grayAt(1, 1)).toBe(0);
  });

  test('writePngGrid writes the same bytes, creating parent directories', async () => {
    const pixels = images(2, 3, 3, 3);
    const file = join(root, 'grids', 'nested', 'grid.png');
    await writePngGrid(file, pixels, 2, 3, 3, 3, { columns: 2, padding: 0 });
    expect(await readFile(file)).toEqual(encodePngGrid(pixels, 2, 3, 3, 3, { columns: 2, padding: 0 }));
  });

  test('a grid of PNG-directory images round-trips through the loader', async () => {
    const dir = await caseDir('grid-roundtrip');
    const pixels = images(3, 4, 5, 3);
    // One column, no padding: the grid is the images stacked, i.e. one tall image.
    await writePngGrid(join(dir, 'stack.png'), pixels, 3, 4, 5, 3, { columns: 1, padding: 0 });
    const ds = await loadImageDataset(dir);
    expect(ds).toMatchObject({ count: 1, height: 12, width: 5, channels: 3 });
    expect(ds.pixels).toEqual(pixels);
  });

  test('rejects inconsistent arguments', () => {
    expect(() => encodePngGrid(new Uint8Array(10), 1, 2, 2, 3)).toThrow(
      /expected 1x2x2x3 = 12 bytes, got 10/,
    );
    expect(() => encodePngGrid(new Uint8Array(8), 1, 2, 2, 2)).toThrow(/channels must be 1, 3 or 4/);
    expect(() => encodePngGrid(new Uint8Array(4), 1, 2, 2, 1, { columns: 0 })).toThrow(/columns/);
    expect(() => encodePngGrid(new Uint8Array(0), 0, 2, 2, 1)).toThrow(/count/);
  });
});

describe('pixel ranges', () => {
  test('toFloatRange maps [0, 255] to [-1, 1] as x / 127.5 - 1', () => {
    const f = toFloatRange(Uint8Array.from([0, 51, 255]));
    expect(f).toBeInstanceOf(Float32Array);
    expect(f[0]).toBe(-1);
    expect(f[1]).toBeCloseTo(51 / 127.5 - 1, 6);
    expect(f[2]).toBe(1);
  });

  test('every byte value survives the round trip, also with small noise', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(toUint8Range(toFloatRange(all))).toEqual(all);
    const nudged = Array.from(toFloatRange(all), (v, i) => v + (i % 2 ? 0.003 : -0.003));
    expect(toUint8Range(nudged)).toEqual(all);
  });

  test('toUint8Range clips out-of-range values and maps NaN to 0', () => {
    expect(Array.from(toUint8Range([-3, -1, 0, 1, 7, NaN, -0.5]))).toEqual([0, 0, 128, 255, 255, 0, 64]);
    expect(Array.from(toUint8Range(Float32Array.from([Infinity, -Infinity])))).toEqual([255, 0]);
  });
});
