import { toUint8Range } from '../data';
import { InvalidInputError } from '../errors';
import type { RunConfig } from '../presets';
import { epsModelFromWeights } from './eps-model';
import { SamplerChoice, makeSampler } from './sampler-choice';

/** Images denoised together unless the caller says otherwise: the same everywhere, so results agree. */
export const DEFAULT_SAMPLE_BATCH = 64;

export interface GenerateProgress {
  /** Images finished so far (whole batches). */
  imagesDone: number;
  imagesTotal: number;
  /** Denoising steps done over all batches (one model evaluation of one batch each). */
  stepsDone: number;
  stepsTotal: number;
}

export interface GenerateOptions {
  /** Global index of the first image (a chunk's start). Default 0. */
  first?: number;
  count: number;
  seed: number;
  sampler: SamplerChoice;
  /**
   * Images denoised together (memory and speed). Batches start at `first`; keep `first` a multiple of it
   * so every image meets the same batch mates however a set is split (see chunks.ts).
   */
  batchSize?: number;
  onProgress?: (p: GenerateProgress) => void | Promise<void>;
}

/**
 * Generates images first..first+count-1 as NHWC uint8. Image i starts from noise keyed by (seed, i) and
 * draws every later noise from the same key, so it does not depend on which process makes it.
 */
export async function generateImages(
  config: RunConfig,
  weights: Float32Array,
  opts: GenerateOptions,
): Promise<Uint8Array> {
  const { imageSize: s, inChannels: c } = config.model;
  const first = opts.first ?? 0;
  if (!Number.isInteger(first) || first < 0)
    throw new InvalidInputError(`first image index must be >= 0, got ${first}`);
  if (!Number.isInteger(opts.count) || opts.count < 1) {
    throw new InvalidInputError(`image count must be a whole number >= 1, got ${opts.count}`);
  }
  const batchSize = opts.batchSize ?? DEFAULT_SAMPLE_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new InvalidInputError(`batch size must be a whole number >= 1, got ${batchSize}`);
  }
  const sampler = makeSampler(config, opts.sampler);
  const out = new Uint8Array(opts.count * s * s * c);
  const batches = Math.ceil(opts.count / batchSize);
  const progress: GenerateProgress = {
    imagesDone: 0,
    imagesTotal: opts.count,
    stepsDone: 0,
    stepsTotal: batches * sampler.numSteps,
  };
  const { model, dispose } = epsModelFromWeights(config, weights);
  try {
    for (let offset = 0; offset < opts.count; offset += batchSize) {
      const n = Math.min(batchSize, opts.count - offset);
      const images = await sampler.sample(model, [n, s, s, c], {
        seed: opts.seed,
        firstSampleIndex: first + offset,
        onStep: async () => {
          progress.stepsDone++;
          await opts.onProgress?.(progress);
        },
      });
      try {
        out.set(toUint8Range((await images.data()) as Float32Array), offset * s * s * c);
      } finally {
        images.dispose();
      }
      progress.imagesDone += n;
      await opts.onProgress?.(progress);
    }
  } finally {
    dispose();
  }
  return out;
}
