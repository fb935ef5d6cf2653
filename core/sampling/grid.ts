import { encodePngGrid } from '../data';
import type { RunConfig } from '../presets';
import { Purpose, hashKey } from '../rng';
import { runKeys } from '../store-layout';
import { GenerateOptions, generateImages } from './generate';

/** Where a run's periodic sample grid at `step` is stored. */
export function sampleGridKey(runId: string, step: number): string {
  return runKeys.sampleGrid(runId, step);
}

/** The seed of a run's periodic grids (and of `sample` when no --seed is given). */
export function runSamplingSeed(config: RunConfig): number {
  return hashKey([config.train.seed, Purpose.Sampling]);
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
  const pixels = await generateImages(config, weights, { ...opts, seed: runSamplingSeed(config) });
  const { imageSize: s, inChannels: c } = config.model;
  return encodePngGrid(pixels, opts.count, s, s, c);
}
