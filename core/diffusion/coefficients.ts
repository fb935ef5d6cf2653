import * as tf from '@tensorflow/tfjs-core';

/**
 * Gathers one float64 schedule constant per sample as a float32 tensor that broadcasts over an image batch:
 * [B, 1, 1, 1], or a scalar when every sample has the same timestep (samplers always, the bound's loop too),
 * because a scalar operand takes the cheap elementwise path on the cpu backend. The gather happens in JS so
 * each constant is rounded to float32 once, after all float64 arithmetic on it is done.
 */
export function perSampleCoefficient(values: Float64Array, t: ArrayLike<number>): tf.Tensor {
  const out = new Float32Array(t.length);
  let uniform = true;
  for (let i = 0; i < t.length; i++) {
    const v = values[t[i]];
    if (v === undefined) throw new RangeError(`timestep ${t[i]} is outside 0..${values.length - 1}`);
    out[i] = v;
    uniform &&= t[i] === t[0];
  }
  return uniform && t.length > 0 ? tf.scalar(out[0]) : tf.tensor4d(out, [t.length, 1, 1, 1]);
}

/** Same timestep for every sample in a batch of `batchSize` (what samplers use). */
export function uniformTimesteps(t: number, batchSize: number): Int32Array {
  return new Int32Array(batchSize).fill(t);
}
