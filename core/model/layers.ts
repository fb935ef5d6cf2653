import * as tf from '@tensorflow/tfjs-core';

/** Looks parameters up by name; the U-Net never sees where they are stored. */
export type ParamLookup = (name: string) => tf.Tensor;

export function conv2d(x: tf.Tensor4D, p: ParamLookup, name: string, stride: 1 | 2 = 1): tf.Tensor4D {
  const y = tf.conv2d(x, p(`${name}.weight`) as tf.Tensor4D, stride, 'same');
  return tf.add(y, p(`${name}.bias`));
}

/** A 1x1 convolution ("network in network") done as one plain matMul over all pixels. */
export function conv1x1(x: tf.Tensor4D, p: ParamLookup, name: string): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const weight = p(`${name}.weight`);
  const cout = weight.shape[3] as number;
  const y = tf.matMul(tf.reshape(x, [b * h * w, c]), tf.reshape(weight, [c, cout]));
  return tf.reshape(tf.add(y, p(`${name}.bias`)), [b, h, w, cout]);
}

export function dense(x: tf.Tensor2D, p: ParamLookup, name: string): tf.Tensor2D {
  return tf.add(tf.matMul(x, p(`${name}.weight`) as tf.Tensor2D), p(`${name}.bias`));
}

export function silu<T extends tf.Tensor>(x: T): T {
  return tf.mul(x, tf.sigmoid(x));
}

/** GroupNorm over (H, W, C/groups) per sample and group; eps 1e-6 as in the reference model. */
export function groupNorm(x: tf.Tensor4D, p: ParamLookup, name: string, groups: number): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const grouped = tf.reshape(x, [b, h * w, groups, c / groups]);
  const { mean, variance } = tf.moments(grouped, [1, 3], true);
  const normalized = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, 1e-6)));
  return tf.add(tf.mul(tf.reshape(normalized, [b, h, w, c]), p(`${name}.weight`)), p(`${name}.bias`));
}

/**
 * Nearest-neighbour 2x upsampling from reshapes and concats, which every backend runs and
 * differentiates (tile's gradient stops at rank 4, and resize kernels' gradients vary by backend).
 */
export function upsampleNearest2x(x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const columns = tf.reshape(x, [b, h, w, 1, c]);
  const wide = tf.reshape(tf.concat([columns, columns], 3), [b, h, 1, 2 * w, c]);
  return tf.reshape(tf.concat([wide, wide], 2), [b, 2 * h, 2 * w, c]);
}

/**
 * Sinusoidal timestep embedding of the reference code (get_timestep_embedding): for each t,
 * [sin(t * f_0..f_{d/2-1}), cos(t * f_0..f_{d/2-1})] with f_k = exp(-log(10000) k / (d/2 - 1)).
 * Computed in float64 in JS so it is identical on every backend.
 */
export function timestepEmbedding(t: Int32Array, dim: number): tf.Tensor2D {
  if (dim % 2 !== 0) throw new Error(`timestep embedding dimension must be even, got ${dim}`);
  const half = dim / 2;
  const out = new Float32Array(t.length * dim);
  const scale = Math.log(10000) / (half - 1);
  for (let i = 0; i < t.length; i++) {
    for (let k = 0; k < half; k++) {
      const arg = t[i] * Math.exp(-scale * k);
      out[i * dim + k] = Math.sin(arg);
      out[i * dim + half + k] = Math.cos(arg);
    }
  }
  return tf.tensor2d(out, [t.length, dim]);
}
