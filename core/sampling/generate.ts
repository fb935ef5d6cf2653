import * as tf from '@tensorflow/tfjs-core';
import { stepName } from './checkpoint/repository';
import { encodePngGrid, toUint8Range } from './data';
import { AncestralSampler, DdimSampler, EpsModel, Sampler } from './diffusion';
import { ParamLayout, tensorsFromFlat } from './model/params';
import { unetForward, unetParamSpecs } from './model/unet';
import type { RunConfig } from './presets';
import { Purpose, hashKey } from './rng';
import { noiseScheduleFor } from './train/trainer';

export interface SamplerChoice {
  /** 'ancestral' is the paper's Algorithm 2 (one step per timestep); 'ddim' needs far fewer steps. */
  kind: 'ancestral' | 'ddim';
  /** DDIM steps (ignored by 'ancestral'). */
  steps?: number;
  /** DDIM eta: 0 deterministic, 1 DDPM-like noise. */
  eta?: number;
}

export function makeSampler(config: RunConfig, choice: SamplerChoice): Sampler {
  const schedule = noiseScheduleFor(config.diffusion);
  return choice.kind === 'ancestral'
    ? new AncestralSampler(schedule, { variance: config.diffusion.variance, clipDenoised: true })
    : new DdimSampler(schedule, { steps: choice.steps ?? 50, eta: choice.eta ?? 0, clipDenoised: true });
}

/** An epsilon model over a flat weight buffer (usually the EMA weights); dispose() frees its tensors. */
export function epsModelFromWeights(
  config: RunConfig,
  weights: Float32Array,
): { model: EpsModel; dispose: () => void } {
  const layout = new ParamLayout(unetParamSpecs(config.model));
  if (weights.length !== layout.totalSize) {
    throw new Error(
      `weights have ${weights.length} values, preset '${config.preset}' needs ${layout.totalSize}`,
    );
  }
  const tensors = tensorsFromFlat(layout, weights);
  const lookup = (name: string) => tensors[layout.indexOf(name)];
  return {
    model: (x, t) => tf.tidy(() => unetForward(config.model, lookup, x, t)),
    dispose: () => tf.dispose(tensors),
  };
}

export interface GenerateOptions {
  count: number;
  seed: number;
  sampler: SamplerChoice;
  /** Images denoised together; bounded by memory. */
  batchSize?: number;
  onProgress?: (stepsDone: number, stepsTotal: number) => void | Promise<void>;
}

/** Generates `count` images as NHWC uint8; image i's noise depends only on (seed, i). */
export async function generateImages(
  config: RunConfig,
  weights: Float32Array,
  opts: GenerateOptions,
): Promise<Uint8Array> {
  const { imageSize: s, inChannels: c } = config.model;
  const sampler = makeSampler(config, opts.sampler);
  const batchSize = Math.max(1, Math.min(opts.batchSize ?? 64, opts.count));
  const out = new Uint8Array(opts.count * s * s * c);
  const totalSteps = Math.ceil(opts.count / batchSize) * sampler.numSteps;
  let done = 0;
  const { model, dispose } = epsModelFromWeights(config, weights);
  try {
    for (let first = 0; first < opts.count; first += batchSize) {
      const n = Math.min(batchSize, opts.count - first);
      const images = await sampler.sample(model, [n, s, s, c], {
        seed: opts.seed,
        firstSampleIndex: first,
        onStep: () => opts.onProgress?.(++done, totalSteps),
      });
      out.set(toUint8Range((await images.data()) as Float32Array), first * s * s * c);
      images.dispose();
    }
  } finally {
    dispose();
  }
  return out;
}

/** Where a run's sample grid at `step` is stored. */
export function sampleGridKey(runId: string, step: number): string {
  return `${runId}/samples/${stepName(step)}.png`;
}

/**
 * A run's sample grid as PNG bytes. The noise is keyed by the run's seed alone, so every grid of a run
 * shows the same starting noise, whichever process (local trainer or activity) draws it.
 */
export async function sampleGridPng(
  config: RunConfig,
  weights: Float32Array,
  opts: Pick<GenerateOptions, 'count' | 'sampler' | 'onProgress'>,
): Promise<Uint8Array> {
  const pixels = await generateImages(config, weights, {
    ...opts,
    seed: hashKey([config.train.seed, Purpose.Sampling]),
  });
  const { imageSize: s, inChannels: c } = config.model;
  return encodePngGrid(pixels, opts.count, s, s, c);
}
