import { SamplingWeights, loadSamplingWeights } from '../core/sampling';
import { storeFor } from './runtime';

/**
 * The EMA weights this process loaded last: the chunks of one set usually land on the same trainers one
 * after another, and a checkpoint load verifies every byte (hundreds of MB for the cifar10 U-Net).
 */
let cached: { key: string; weights: SamplingWeights } | null = null;

export async function samplingWeights(
  storeUri: string,
  runId: string,
  step: number,
): Promise<SamplingWeights> {
  const key = `${storeUri}\n${runId}\n${step}`;
  if (cached?.key !== key)
    cached = { key, weights: await loadSamplingWeights(storeFor(storeUri), runId, step) };
  return cached.weights;
}
