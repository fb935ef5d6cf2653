import * as tf from '@tensorflow/tfjs-core';
import { Purpose, Rng } from '../rng';
import type { DropoutMasks } from '../model/unet';

/** The pixels a trainer draws from: NHWC uint8, as the data readers produce them. */
export interface ImageSource {
  count: number;
  height: number;
  width: number;
  channels: number;
  pixels: Uint8Array;
}

/**
 * Data order without replacement within an epoch: global sample number k = step * batchSize + position
 * falls in epoch floor(k / count), whose permutation is keyed by (seed, epoch). Resuming at any step
 * therefore sees exactly the samples an uninterrupted run would.
 */
export class EpochOrder {
  private cachedEpoch = -1;
  private cached: Uint32Array = new Uint32Array(0);

  constructor(
    private readonly seed: number,
    private readonly count: number,
  ) {
    if (count <= 0) throw new Error('cannot draw batches from an empty dataset');
  }

  indexAt(globalSample: number): number {
    const epoch = Math.floor(globalSample / this.count);
    if (epoch !== this.cachedEpoch) {
      this.cached = new Rng([this.seed, Purpose.DataOrder, epoch]).permutation(this.count);
      this.cachedEpoch = epoch;
    }
    return this.cached[globalSample % this.count];
  }
}

export interface MicroBatch {
  /** Positions within the global batch of this step (0 .. batchSize-1). */
  positions: number[];
  /** Clean images in [-1, 1], NHWC. */
  x0: Float32Array;
  t: Int32Array;
  noise: Float32Array;
}

export interface BatchRandomness {
  seed: number;
  timesteps: number;
  randomFlip: boolean;
  batchSize: number;
}

/** Everything random about one training example is keyed by (seed, purpose, step, position in batch). */
export function buildMicroBatch(
  data: ImageSource,
  order: EpochOrder,
  r: BatchRandomness,
  step: number,
  positions: number[],
): MicroBatch {
  const { height: h, width: w, channels: c } = data;
  const perImage = h * w * c;
  const x0 = new Float32Array(positions.length * perImage);
  const noise = new Float32Array(positions.length * perImage);
  const t = new Int32Array(positions.length);
  positions.forEach((pos, i) => {
    const index = order.indexAt(step * r.batchSize + pos);
    const src = index * perImage;
    const dst = i * perImage;
    const flip = r.randomFlip && new Rng([r.seed, Purpose.Flip, step, pos]).uniform() < 0.5;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const sx = flip ? w - 1 - x : x;
        for (let ch = 0; ch < c; ch++) {
          x0[dst + (y * w + x) * c + ch] = data.pixels[src + (y * w + sx) * c + ch] / 127.5 - 1;
        }
      }
    }
    t[i] = new Rng([r.seed, Purpose.Timestep, step, pos]).int(r.timesteps);
    new Rng([r.seed, Purpose.Noise, step, pos]).fillNormal(noise, dst, perImage);
  });
  return { positions, x0, t, noise };
}

/** Inverted-dropout keep masks for the samples of a micro-batch, one stream per (step, position, layer). */
export function dropoutMasksFor(seed: number, step: number, positions: number[], rate: number): DropoutMasks {
  return (layer, shape) => {
    if (rate <= 0) return null;
    const perSample = shape[1] * shape[2] * shape[3];
    const values = new Float32Array(positions.length * perSample);
    const keep = 1 / (1 - rate);
    positions.forEach((pos, i) => {
      const rng = new Rng([seed, Purpose.Dropout, step, pos, layer]);
      const base = i * perSample;
      for (let j = 0; j < perSample; j++) values[base + j] = rng.uniform() < rate ? 0 : keep;
    });
    return tf.tensor4d(values, shape);
  };
}

/** Contiguous slice of the global batch for one of `worldSize` workers. */
export function positionsForRank(batchSize: number, rank: number, worldSize: number): number[] {
  if (worldSize < 1 || rank < 0 || rank >= worldSize)
    throw new Error(`rank ${rank} outside world of ${worldSize}`);
  const start = Math.floor((rank * batchSize) / worldSize);
  const end = Math.floor(((rank + 1) * batchSize) / worldSize);
  return Array.from({ length: end - start }, (_, i) => start + i);
}

export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
