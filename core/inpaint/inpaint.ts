import * as tf from '@tensorflow/tfjs-core';
import { toFloatRange, toUint8Range } from '../data';
import { RePaintOptions, RePaintSampler } from '../diffusion';
import { InvalidInputError } from '../errors';
import type { RunConfig } from '../presets';
import { epsModelFromWeights } from '../sampling/eps-model';
import { noiseScheduleFor } from '../train/trainer';

export interface InpaintOptions {
  /** NHWC uint8 images at the model's size; `count` of them. */
  pixels: Uint8Array;
  /** One byte per pixel and image (N*H*W): 1 keeps the image's pixel, 0 fills it. */
  keep: Uint8Array;
  count: number;
  seed: number;
  repaint?: RePaintOptions;
  /** Images inpainted together. Default 16. */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void | Promise<void>;
}

export interface InpaintResult {
  /** NHWC uint8: kept pixels byte for byte from the input, the rest generated. */
  pixels: Uint8Array;
  sampler: RePaintSampler;
}

/** The RePaint sampler for a run's schedule, with bad settings reported as input errors. */
export function repaintSamplerFor(config: RunConfig, options: RePaintOptions = {}): RePaintSampler {
  try {
    return new RePaintSampler(noiseScheduleFor(config.diffusion), options);
  } catch (err) {
    if (err instanceof RangeError) throw new InvalidInputError(err.message);
    throw err;
  }
}

/**
 * Fills the masked-out pixels of each image with the unconditional model (RePaint). The kept pixels
 * of the result are copied from the input bytes, so they match exactly whatever float rounding did.
 * Image i's noise is keyed by (seed, i), as in sampling.
 */
export async function inpaintImages(
  config: RunConfig,
  weights: Float32Array,
  opts: InpaintOptions,
): Promise<InpaintResult> {
  const { imageSize: s, inChannels: c } = config.model;
  const per = s * s * c;
  if (opts.pixels.length !== opts.count * per) {
    throw new InvalidInputError(
      `expected ${opts.count} images of ${s}x${s}x${c}, got ${opts.pixels.length} bytes`,
    );
  }
  if (opts.keep.length !== opts.count * s * s) {
    throw new InvalidInputError(`expected ${opts.count} masks of ${s}x${s}, got ${opts.keep.length} values`);
  }
  if (opts.keep.every((k) => k === 1))
    throw new InvalidInputError('the mask keeps every pixel: nothing to fill');
  const sampler = repaintSamplerFor(config, opts.repaint);
  const batchSize = Math.max(1, opts.batchSize ?? 16);
  const out = new Uint8Array(opts.count * per);
  const batches = Math.ceil(opts.count / batchSize);
  const total = batches * (sampler.positions.length - 1);
  let done = 0;
  const { model, dispose } = epsModelFromWeights(config, weights);
  try {
    for (let first = 0; first < opts.count; first += batchSize) {
      const n = Math.min(batchSize, opts.count - first);
      const x0 = tf.tensor4d(toFloatRange(opts.pixels.subarray(first * per, (first + n) * per)), [
        n,
        s,
        s,
        c,
      ]);
      const mask = tf.tensor4d(Float32Array.from(opts.keep.subarray(first * s * s, (first + n) * s * s)), [
        n,
        s,
        s,
        1,
      ]);
      try {
        const filled = await sampler.inpaint(model, x0, mask, {
          seed: opts.seed,
          firstSampleIndex: first,
          onStep: () => opts.onProgress?.(++done, total),
        });
        const bytes = toUint8Range((await filled.data()) as Float32Array);
        filled.dispose();
        out.set(bytes, first * per);
      } finally {
        x0.dispose();
        mask.dispose();
      }
    }
  } finally {
    dispose();
  }
  // The kept pixels, exactly: the sampler already returns x_0 there, this makes it byte-exact.
  for (let p = 0; p < opts.count * s * s; p++) {
    if (opts.keep[p] === 1) for (let ch = 0; ch < c; ch++) out[p * c + ch] = opts.pixels[p * c + ch];
  }
  return { pixels: out, sampler };
}
