import * as tf from '@tensorflow/tfjs-core';
import type { EpsModel } from '../diffusion';
import { InvalidInputError } from '../errors';
import { ParamLayout, tensorsFromFlat } from '../model/params';
import { unetForward, unetParamSpecs } from '../model/unet';
import type { RunConfig } from '../presets';

/** An epsilon model over a flat weight buffer (usually the EMA weights); dispose() frees its tensors. */
export function epsModelFromWeights(
  config: RunConfig,
  weights: Float32Array,
): { model: EpsModel; dispose: () => void } {
  const layout = new ParamLayout(unetParamSpecs(config.model));
  if (weights.length !== layout.totalSize) {
    throw new InvalidInputError(
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
