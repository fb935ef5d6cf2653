/**
 * The layers with hand-written gradients against autodiff of the same function composed from plain ops
 * (the formulation they replace), on the cpu reference backend: forward values and the gradients with
 * respect to every input agree to float precision, also for activations far from zero mean.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { ParamLookup, conv1x1, groupNormOp, selfAttention } from '../core/model/layers';
import { Purpose, Rng } from '../core/rng';
import { registerGradients } from '../core/tf-gradients';

beforeAll(async () => {
  registerGradients();
  await tf.setBackend('cpu');
});

/** GroupNorm (+ SiLU) as tf.moments and elementwise ops: what autodiff differentiates. */
function composed(x: tf.Tensor4D, w: tf.Tensor, b: tf.Tensor, groups: number, silu: boolean): tf.Tensor4D {
  const [n, h, wd, c] = x.shape;
  const grouped = tf.reshape(x, [n, h * wd, groups, c / groups]);
  const { mean, variance } = tf.moments(grouped, [1, 3], true);
  const normalized = tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, 1e-6)));
  const y = tf.add(tf.mul(tf.reshape(normalized, [n, h, wd, c]), w), b) as tf.Tensor4D;
  return silu ? tf.mul(y, tf.sigmoid(y)) : y;
}

function random(shape: number[], seed: number, scale = 1, offset = 0): tf.Tensor {
  const rng = new Rng([seed, Purpose.Evaluation]);
  const size = shape.reduce((a, v) => a * v, 1);
  return tf.tensor(
    Float32Array.from({ length: size }, () => offset + scale * rng.normal()),
    shape,
  );
}

function maxRelDiff(a: tf.Tensor, ref: tf.Tensor): number {
  const av = a.dataSync();
  const rv = ref.dataSync();
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < rv.length; i++) {
    scale = Math.max(scale, Math.abs(rv[i]));
    diff = Math.max(diff, Math.abs(av[i] - rv[i]));
  }
  return diff / scale;
}

describe.each([
  { silu: false, offset: 0 },
  { silu: true, offset: 0 },
  { silu: true, offset: 20 },
])('GroupNorm (SiLU: $silu, activations around $offset)', ({ silu, offset }) => {
  test('value and gradients for input, weight and bias match autodiff of the composed ops', () => {
    const shape = [3, 5, 4, 12];
    const groups = 4;
    const x = random(shape, 1, 2, offset) as tf.Tensor4D;
    const w = random([12], 2, 0.5, 1);
    const b = random([12], 3, 0.5);
    const upstream = random(shape, 4);
    const loss = (f: typeof composed) => (xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) =>
      tf.sum(tf.mul(f(xi as tf.Tensor4D, wi, bi, groups, silu), upstream));
    const fused = tf.valueAndGrads(loss(groupNormOp));
    const reference = tf.valueAndGrads(loss(composed));
    const got = fused([x, w, b]);
    const want = reference([x, w, b]);
    expect(maxRelDiff(groupNormOp(x, w, b, groups, silu), composed(x, w, b, groups, silu))).toBeLessThan(
      1e-5,
    );
    expect(Math.abs(got.value.dataSync()[0] - want.value.dataSync()[0])).toBeLessThan(
      1e-5 * Math.abs(want.value.dataSync()[0]),
    );
    ['x', 'weight', 'bias'].forEach((name, i) => {
      const diff = maxRelDiff(got.grads[i], want.grads[i]);
      if (diff >= 1e-4) throw new Error(`d/d${name}: max rel. difference ${diff}`);
      expect(got.grads[i].shape).toEqual(want.grads[i].shape);
    });
  });
});

/** The attention of the reference AttnBlock written plainly: three 1x1 convolutions, scaled logits. */
function plainAttention(h: tf.Tensor4D, p: ParamLookup): tf.Tensor4D {
  const [b, height, width, c] = h.shape;
  const tokens = (t: tf.Tensor4D) => tf.reshape(t, [b, height * width, c]);
  const q = tokens(conv1x1(h, p, 'a.q'));
  const k = tokens(conv1x1(h, p, 'a.k'));
  const v = tokens(conv1x1(h, p, 'a.v'));
  const weights = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(c)));
  return conv1x1(tf.reshape(tf.matMul(weights, v), [b, height, width, c]) as tf.Tensor4D, p, 'a.proj_out');
}

test('attention from one q/k/v matMul matches three separate projections, value and gradients', () => {
  const c = 8;
  const names = ['q', 'k', 'v', 'proj_out'].flatMap((n) => [`a.${n}.weight`, `a.${n}.bias`]);
  const params = names.map((n, i) => random(n.endsWith('weight') ? [1, 1, c, c] : [c], 10 + i, 0.4));
  const h = random([2, 3, 4, c], 9) as tf.Tensor4D;
  const upstream = random([2, 3, 4, c], 30);
  const loss =
    (f: typeof plainAttention) =>
    (...ps: tf.Tensor[]) => {
      const lookup = (n: string) => ps[names.indexOf(n) + 1];
      return tf.sum(tf.mul(f(ps[0] as tf.Tensor4D, lookup), upstream));
    };
  const got = tf.valueAndGrads(loss((x, p) => selfAttention(x, p, 'a')))([h, ...params]);
  const want = tf.valueAndGrads(loss(plainAttention))([h, ...params]);
  expect(Math.abs(got.value.dataSync()[0] - want.value.dataSync()[0])).toBeLessThan(
    1e-5 * Math.abs(want.value.dataSync()[0]),
  );
  // k's bias shifts every logit of a query equally, so softmax cancels it: its gradient is rounding noise,
  // compared on the scale of all gradients.
  const scale = Math.max(...want.grads.map((g) => tf.max(tf.abs(g)).dataSync()[0]));
  ['h', ...names].forEach((name, i) => {
    const diff = tf.max(tf.abs(tf.sub(got.grads[i], want.grads[i]))).dataSync()[0] / scale;
    if (diff >= 1e-5) throw new Error(`d/d${name}: max difference ${diff} of the largest gradient`);
  });
});

test('the hand-written gradient leaves no tensors behind', () => {
  const x = random([2, 4, 4, 8], 5) as tf.Tensor4D;
  const w = random([8], 6);
  const b = random([8], 7);
  const before = tf.memory().numTensors;
  const { value, grads } = tf.valueAndGrads((xi: tf.Tensor, wi: tf.Tensor, bi: tf.Tensor) =>
    tf.sum(groupNormOp(xi as tf.Tensor4D, wi, bi, 2, true)),
  )([x, w, b]);
  tf.dispose([value, ...grads]);
  expect(tf.memory().numTensors).toBe(before);
});
