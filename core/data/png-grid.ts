import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PNG, type ColorType } from 'pngjs';

export interface PngGridOptions {
  /** Tiles per row; default ceil(sqrt(count)), a near-square grid. */
  columns?: number;
  /** Black pixels between tiles and around the edge (as torchvision's make_grid); default 2. */
  padding?: number;
}

const COLOR_TYPE_FOR_CHANNELS: Record<number, ColorType> = { 1: 0, 3: 2, 4: 6 };

function requireInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new RangeError(`encodePngGrid: ${name} must be an integer >= ${min}, got ${value}`);
  }
}

/**
 * Tiles `count` NHWC images into one PNG, row by row. Channels 1, 3 and 4 are written as grayscale,
 * RGB and RGBA PNGs, so the file holds exactly the given bytes.
 */
export function encodePngGrid(
  images: Uint8Array,
  count: number,
  height: number,
  width: number,
  channels: number,
  opts: PngGridOptions = {},
): Buffer {
  requireInteger('count', count, 1);
  requireInteger('height', height, 1);
  requireInteger('width', width, 1);
  const colorType = COLOR_TYPE_FOR_CHANNELS[channels];
  if (colorType === undefined)
    throw new RangeError(`encodePngGrid: channels must be 1, 3 or 4, got ${channels}`);
  const tileBytes = height * width * channels;
  if (images.length !== count * tileBytes) {
    throw new RangeError(
      `encodePngGrid: expected ${count}x${height}x${width}x${channels} = ${count * tileBytes} bytes, got ${images.length}`,
    );
  }
  const columns = opts.columns ?? Math.ceil(Math.sqrt(count));
  const padding = opts.padding ?? 2;
  requireInteger('columns', columns, 1);
  requireInteger('padding', padding, 0);

  const rows = Math.ceil(count / columns);
  const gridWidth = columns * (width + padding) + padding;
  const gridHeight = rows * (height + padding) + padding;
  const grid = Buffer.alloc(gridWidth * gridHeight * channels);
  const rowBytes = width * channels;
  for (let image = 0; image < count; image++) {
    const top = padding + Math.floor(image / columns) * (height + padding);
    const left = padding + (image % columns) * (width + padding);
    for (let y = 0; y < height; y++) {
      const from = image * tileBytes + y * rowBytes;
      grid.set(images.subarray(from, from + rowBytes), ((top + y) * gridWidth + left) * channels);
    }
  }

  const png = new PNG({ width: gridWidth, height: gridHeight });
  png.data = grid;
  // Input and output colour types match, so pngjs writes our bytes through without converting them.
  return PNG.sync.write(png, { colorType, inputColorType: colorType, inputHasAlpha: channels === 4 });
}

/** encodePngGrid, written to `path` (parent directories are created). */
export async function writePngGrid(
  path: string,
  images: Uint8Array,
  count: number,
  height: number,
  width: number,
  channels: number,
  opts: PngGridOptions = {},
): Promise<void> {
  const png = encodePngGrid(images, count, height, width, channels, opts);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, png);
}
