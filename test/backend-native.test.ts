/**
 * The native TensorFlow backend (tfjs-node built by infra/tfjs-native/install.sh against a PyPI
 * libtensorflow) must compute what TF.js's reference `cpu` backend computes for the ops training leans on:
 * conv2d and both its gradients, matMul, and GroupNorm's moments. `npm test` installs the backend first
 * (pretest), so a missing or broken tfjs-node fails this file; only an explicit DDPM_NO_NATIVE=1 (for
 * machines that cannot build it) leaves it out. Gradients are registered by the @tensorflow/tfjs package
 * that tfjs-node loads.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadNative } from '../core/backend/candidates/tensorflow';

const INSTALL_HINT = 'run infra/tfjs-native/install.sh';

function loadTfjsNode(): boolean {
  const native = loadNative();
  if (native.ok) return true;
  if (process.env.DDPM_NO_NATIVE === '1') return false;
  throw new Error(
    `the native backend does not load: ${native.reason}; ${INSTALL_HINT} (or set DDPM_NO_NATIVE=1 to leave it out)`,
  );
}

const nativeInstalled = loadTfjsNode();
if (!nativeInstalled) console.warn(`backend-native tests left out by DDPM_NO_NATIVE=1`);
const describeNative = nativeInstalled ? describe : describe.skip;

/** Deterministic values in [-1, 1), the same on every backend (a 32-bit LCG). */
function pseudoRandom(shape: number[], seed: number): { shape: number[]; values: Float32Array } {
  const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let state = seed >>> 0;
  for (let i = 0; i < values.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    values[i] = state / 2 ** 31 - 1;
  }
  return { shape, values };
}

type Input = ReturnType<typeof pseudoRandom>;

/** Runs `compute` on `backend` with the inputs created there and returns every output's values. */
async function runOn(
  backend: string,
  inputs: Input[],
  compute: (...tensors: tf.Tensor[]) => tf.Tensor[],
): Promise<{ shape: number[]; values: Float32Array }[]> {
  expect(await tf.setBackend(backend)).toBe(true);
  expect(tf.getBackend()).toBe(backend);
  return tf.tidy(() => {
    const tensors = inputs.map((input) => tf.tensor(input.values, input.shape));
    return compute(...tensors).map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  });
}

/** Largest absolute difference, relative to the reference's largest magnitude. */
function relativeError(actual: Float32Array, expected: Float32Array): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxDiff / maxRef;
}

/** Native results must match the cpu backend's shapes and values (fp32, oneDNN summation order). */
async function expectNativeMatchesCpu(
  inputs: Input[],
  compute: (...tensors: tf.Tensor[]) => tf.Tensor[],
  tolerance = 1e-5,
): Promise<void> {
  const expected = await runOn('cpu', inputs, compute);
  const actual = await runOn('tensorflow', inputs, compute);
  expect(actual).toHaveLength(expected.length);
  actual.forEach((out, i) => {
    expect(out.shape).toEqual(expected[i].shape);
    expect(out.values).toHaveLength(expected[i].values.length);
    // A zero reference would make the comparison vacuous.
    expect(expected[i].values.some((v) => v !== 0)).toBe(true);
    expect(relativeError(out.values, expected[i].values)).toBeLessThan(tolerance);
  });
}

describeNative('native TensorFlow backend (tfjs-node) matches the cpu backend', () => {
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  test('reports the TensorFlow library it runs on', () => {
    const backend = tf.findBackend('tensorflow') as unknown as { binding: { TF_Version: string } } | null;
    expect(backend).not.toBeNull();
    expect(backend?.binding.TF_Version).toMatch(/^2\.\d+\.\d+/);
  });

  describe.each([
    { stride: 1, size: 9 },
    { stride: 2, size: 9 },
    { stride: 2, size: 8 },
  ])('3x3 conv2d, stride $stride, same padding, $size x $size input', ({ stride, size }) => {
    const x = pseudoRandom([2, size, size, 6], 1);
    const filter = pseudoRandom([3, 3, 6, 5], 2);
    const outSize = Math.ceil(size / stride);
    // Weights the loss per output element so the gradients are not all alike.
    const lossWeights = pseudoRandom([2, outSize, outSize, 5], 3);
    const conv = (xt: tf.Tensor, ft: tf.Tensor) =>
      tf.conv2d(xt as tf.Tensor4D, ft as tf.Tensor4D, stride, 'same');

    test('forward', async () => {
      await expectNativeMatchesCpu([x, filter], (xt, ft) => [conv(xt, ft)]);
    });

    test('input and filter gradients', async () => {
      await expectNativeMatchesCpu([x, filter, lossWeights], (xt, ft, wt) => {
        const [dx, dFilter] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv(a, b), wt)))([
          xt,
          ft,
        ]);
        expect(dx.shape).toEqual(xt.shape);
        expect(dFilter.shape).toEqual(ft.shape);
        return [dx, dFilter];
      });
    });
  });

  test.each([
    { transposeA: false, transposeB: false },
    { transposeA: true, transposeB: false },
    { transposeA: false, transposeB: true },
  ])(
    'matMul 33x47 . 47x29 (transposeA $transposeA, transposeB $transposeB)',
    async ({ transposeA, transposeB }) => {
      const a = pseudoRandom(transposeA ? [47, 33] : [33, 47], 4);
      const b = pseudoRandom(transposeB ? [29, 47] : [47, 29], 5);
      await expectNativeMatchesCpu([a, b], (at, bt) => [
        tf.matMul(at as tf.Tensor2D, bt as tf.Tensor2D, transposeA, transposeB),
      ]);
    },
  );

  test('GroupNorm moments over (H, W, channels in group), normalisation and its gradient', async () => {
    const x = pseudoRandom([2, 8, 8, 12], 6);
    const lossWeights = pseudoRandom([2, 8, 8, 12], 7);
    const groups = 4;
    const normalize = (xt: tf.Tensor) => {
      const grouped = tf.reshape(xt, [2, 8, 8, groups, 12 / groups]);
      const { mean, variance } = tf.moments(grouped, [1, 2, 4], true);
      const normalized = tf.reshape(tf.div(tf.sub(grouped, mean), tf.sqrt(tf.add(variance, 1e-5))), xt.shape);
      return { mean, variance, normalized };
    };
    await expectNativeMatchesCpu([x, lossWeights], (xt, wt) => {
      const { mean, variance, normalized } = normalize(xt);
      const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(normalize(a).normalized, wt)))(xt);
      return [mean, variance, normalized, dx];
    });
  });
});
