import type { RunConfig } from '../presets';

/**
 * Images per forward/backward pass when the user did not choose: the preset's, except on wasm, whose
 * 4 GiB heap holds the 35.7M-parameter U-Net's activations only for small micro-batches.
 */
export function defaultMicroBatchSize(backend: string, config: RunConfig): number {
  if (backend === 'wasm' && config.model.ch >= 128) return Math.min(4, config.train.microBatchSize);
  return config.train.microBatchSize;
}
