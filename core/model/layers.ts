import * as tf from '@tensorflow/tfjs-core';

/** Looks parameters up by name; the U-Net never sees where they are stored. */
export type ParamLookup = (name: string) => tf.Tensor;

/** A convolution with its bias added by the same kernel (one launch instead of two on wasm and webgpu). */
export function conv2d(x: tf.Tensor4D, p: ParamLookup, name: string, stride: 1 | 2 = 1): tf.Tensor4D {
  return tf.fused.conv2d({
    x,
    filter: p(`${name}.weight`) as tf.Tensor4D,
    strides: stride,
    pad: 'same',
    bias: p(`${name}.bias`),
  });
}

/** A 1x1 convolution ("network in network") done as one plain matMul over all pixels. */
export function conv1x1(x: tf.Tensor4D, p: ParamLookup, name: string): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const weight = p(`${name}.weight`);
  const cout = weight.shape[3] as number;
  const y = tf.matMul(tf.reshape(x, [b * h * w, c]), tf.reshape(weight, [c, cout]));
  return tf.reshape(tf.add(y, p(`${name}.bias`)), [b, h, w, cout]);
}

/**
 * Single-head self-attention over the pixels of an NHWC map (the reference AttnBlock without its norm and
 * residual): q, k and v come from one matMul against their weights side by side, the 1/sqrt(c) scale is
 * folded into q's (small) weights instead of the [pixels x pixels] logits, and the output projection
 * follows. Every matMul is batched over the samples.
 */
export function selfAttention(h: tf.Tensor4D, p: ParamLookup, name: string): tf.Tensor4D {
  const [b, height, width, c] = h.shape;
  const scale = 1 / Math.sqrt(c);
  const weight = tf.concat(
    [
      tf.mul(tf.reshape(p(`${name}.q.weight`), [c, c]), scale),
      tf.reshape(p(`${name}.k.weight`), [c, c]),
      tf.reshape(p(`${name}.v.weight`), [c, c]),
    ],
    1,
  );
  const bias = tf.concat([tf.mul(p(`${name}.q.bias`), scale), p(`${name}.k.bias`), p(`${name}.v.bias`)]);
  const qkv = tf.add(tf.matMul(tf.reshape(h, [b * height * width, c]), weight), bias);
  const [q, k, v] = tf.split(tf.reshape(qkv, [b, height * width, 3 * c]), 3, 2);
  const weights = tf.softmax(tf.matMul(q, k, false, true));
  const attended = tf.reshape(tf.matMul(weights, v), [b, height, width, c]) as tf.Tensor4D;
  return conv1x1(attended, p, `${name}.proj_out`);
}

export function dense(x: tf.Tensor2D, p: ParamLookup, name: string): tf.Tensor2D {
  return tf.add(tf.matMul(x, p(`${name}.weight`) as tf.Tensor2D), p(`${name}.bias`));
}

export function silu<T extends tf.Tensor>(x: T): T {
  return tf.mul(x, tf.sigmoid(x));
}

/** GroupNorm over (H, W, C/groups) per sample and group; eps 1e-6 as in the reference model. */
export function groupNorm(x: tf.Tensor4D, p: ParamLookup, name: string, groups: number): tf.Tensor4D {
  return groupNormOp(x, p(`${name}.weight`), p(`${name}.bias`), groups, false);
}

/** silu(groupNorm(x)) as one op: the pair the U-Net uses before every convolution. */
export function groupNormSilu(x: tf.Tensor4D, p: ParamLookup, name: string, groups: number): tf.Tensor4D {
  return groupNormOp(x, p(`${name}.weight`), p(`${name}.bias`), groups, true);
}

const GROUP_NORM_EPSILON = 1e-6;

/**
 * GroupNorm (optionally followed by SiLU) with a hand-written gradient. Autodiff of the composed ops
 * (moments, normalise, scale, shift, sigmoid, multiply) launches more kernels and makes about twice the
 * passes over the activations: here 8 forward and 12 backward with SiLU. The activations are viewed as
 * [batch, pixels, channels]: every big op is elementwise or broadcasts a [batch, 1, channels] factor, and
 * every big reduction sums over pixels only (TensorFlow's CPU kernels are several times slower reducing
 * over two separated axes); the group sums are then taken on those small per-channel results.
 * Activations are centred before anything is multiplied, as in the composed version, so nothing cancels.
 */
export function groupNormOp(
  x: tf.Tensor4D,
  weight: tf.Tensor,
  bias: tf.Tensor,
  groups: number,
  withSilu: boolean,
): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const cg = c / groups;
  const count = h * w * cg;
  const pixels = (t: tf.Tensor) => tf.reshape(t, [b, h * w, c]);
  /** Per-(sample, channel) sums [b, 1, c] to their group's mean, repeated for each channel of the group. */
  const groupMean = (perChannel: tf.Tensor) => {
    const sums = tf.sum(tf.reshape(perChannel, [b, groups, cg]), 2, true);
    return tf.reshape(tf.tile(tf.div(sums, count), [1, 1, cg]), [b, 1, c]);
  };
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, weightIn, biasIn] = args as tf.Tensor[];
    const xs = pixels(xIn);
    const mean = groupMean(tf.sum(xs, 1, true));
    const centred = tf.sub(xs, mean);
    const rstd = tf.rsqrt(tf.add(groupMean(tf.sum(tf.square(centred), 1, true)), GROUP_NORM_EPSILON));
    const y = tf.add(tf.mul(centred, tf.mul(rstd, weightIn)), biasIn);
    const save = args[3] as tf.GradSaveFunc;
    if (!withSilu) {
      save([xIn, weightIn, mean, rstd]);
      return { value: tf.reshape(y, [b, h, w, c]), gradFunc };
    }
    const s = tf.sigmoid(y);
    const z = tf.mul(y, s);
    save([xIn, weightIn, mean, rstd, s, z]);
    return { value: tf.reshape(z, [b, h, w, c]), gradFunc };
  });

  function gradFunc(dz: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] {
    const [xIn, weightIn, mean, rstd, s, z] = saved;
    // Temporaries of a customGrad gradient live until the whole backward pass ends unless tidied.
    return tf.tidy(() => {
      // silu'(y) = s + y s (1 - s) = s + z - z s, with s = sigmoid(y) and the output z = y s.
      const dy = withSilu ? tf.mul(pixels(dz), tf.add(tf.sub(z, tf.mul(z, s)), s)) : pixels(dz);
      const centred = tf.sub(pixels(xIn), mean);
      // Per (sample, channel) sums of dy and of dy * xhat, with xhat = centred * rstd.
      const sumDy = tf.sum(dy, 1, true);
      const sumDyXhat = tf.mul(tf.sum(tf.mul(dy, centred), 1, true), rstd);
      const dBias = tf.reshape(tf.sum(sumDy, 0), [c]);
      const dWeight = tf.reshape(tf.sum(sumDyXhat, 0), [c]);
      // dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy * weight, means over a group.
      const meanDxhat = groupMean(tf.mul(sumDy, weightIn));
      const meanDxhatXhat = groupMean(tf.mul(sumDyXhat, weightIn));
      const dx = tf.add(
        tf.add(
          tf.mul(dy, tf.mul(rstd, weightIn)),
          tf.mul(centred, tf.neg(tf.mul(tf.square(rstd), meanDxhatXhat))),
        ),
        tf.neg(tf.mul(rstd, meanDxhat)),
      );
      return [tf.reshape(dx, [b, h, w, c]), dWeight, dBias];
    });
  }

  return op(x, weight, bias) as tf.Tensor4D;
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
