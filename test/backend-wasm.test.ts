/**
 * The wasm training kernels against the cpu backend (plain JS reference kernels): conv2d forward and both
 * gradients, matMul in every transpose combination, and that no call leaves tensors or wasm memory behind.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { initBackend } from '../core/backend';
import { registerGradients } from '../core/tf-gradients';
import { conv2DBackpropFilter } from '../core/backend/wasm-kernels/conv2d-backprop-filter';
import { originalKernels } from '../core/backend/wasm-kernels/wasm-access';

/** float32 sums over hundreds of terms, compared relative to the largest reference magnitude. */
const TOLERANCE = 1e-5;

function seededValues(n: number, seed: number): Float32Array {
  // mulberry32: tiny and deterministic, so both backends get identical inputs.
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  }
  return out;
}

function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  expect(scale).toBeGreaterThan(0);
  return diff / scale;
}

async function onBackend<T>(name: 'cpu' | 'wasm', body: () => Promise<T>): Promise<T> {
  await tf.setBackend(name);
  return body();
}

function wasmBackend(): BackendWasm {
  return tf.backend() as BackendWasm;
}

/** Runs `body` on wasm and checks that afterwards no tensor and no wasm buffer is left over. */
async function withoutLeaks<T>(body: () => Promise<T>): Promise<T> {
  const tensors = tf.memory().numTensors;
  const buffers = wasmBackend().numDataIds();
  const result = await body();
  expect(tf.memory().numTensors).toBe(tensors);
  expect(wasmBackend().numDataIds()).toBe(buffers);
  return result;
}

type Pad =
  'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

interface ConvCase {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride: number;
  pad: Pad;
}

const CONV_CASES: ConvCase[] = [
  { x: [2, 9, 9, 3], filter: [3, 3, 3, 8], stride: 1, pad: 'same' },
  { x: [2, 8, 8, 8], filter: [3, 3, 8, 16], stride: 1, pad: 'same' },
  { x: [2, 9, 9, 3], filter: [3, 3, 3, 8], stride: 2, pad: 'same' },
  { x: [2, 8, 8, 8], filter: [3, 3, 8, 16], stride: 2, pad: 'same' },
  { x: [2, 7, 7, 8], filter: [1, 1, 8, 16], stride: 1, pad: 'same' },
  { x: [2, 8, 8, 8], filter: [1, 1, 8, 16], stride: 2, pad: 'same' },
  { x: [2, 7, 7, 8], filter: [1, 1, 8, 16], stride: 2, pad: 'same' },
  { x: [2, 7, 6, 8], filter: [3, 3, 8, 16], stride: 1, pad: 'valid' },
  { x: [2, 8, 8, 8], filter: [3, 3, 8, 16], stride: 2, pad: 'valid' },
  { x: [2, 9, 9, 3], filter: [3, 3, 3, 8], stride: 2, pad: 1 },
  {
    x: [2, 2, 2, 8], // output 2x2 as well: the same pixel count as the input, yet not the identity windows
    filter: [1, 1, 8, 16],
    stride: 2,
    pad: [
      [0, 0],
      [1, 1],
      [1, 0],
      [0, 0],
    ],
  },
  {
    x: [2, 8, 7, 3],
    filter: [3, 3, 3, 8],
    stride: 1,
    pad: [
      [0, 0],
      [2, 0],
      [0, 1],
      [0, 0],
    ],
  },
];

interface ConvResults {
  y: Float32Array;
  dx: Float32Array;
  dFilter: Float32Array;
}

/** Forward conv and the gradients of sum(conv(x, filter) * weights), so dy is not all ones. */
async function convAndGradients(c: ConvCase): Promise<ConvResults> {
  const x = tf.tensor4d(seededValues(tf.util.sizeFromShape(c.x), 1), c.x);
  const filter = tf.tensor4d(seededValues(tf.util.sizeFromShape(c.filter), 2), c.filter);
  const conv = (a: tf.Tensor4D, b: tf.Tensor4D) => tf.conv2d(a, b, c.stride, c.pad);
  const y = conv(x, filter);
  const weights = tf.tensor(seededValues(y.size, 3), y.shape);
  const [dx, dFilter] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), weights)),
  )([x, filter]);
  const results = {
    y: (await y.data()) as Float32Array,
    dx: (await dx.data()) as Float32Array,
    dFilter: (await dFilter.data()) as Float32Array,
  };
  tf.dispose([x, filter, y, weights, dx, dFilter]);
  return results;
}

function describeConv(c: ConvCase): string {
  const pad = Array.isArray(c.pad) ? JSON.stringify(c.pad.slice(1, 3)) : c.pad;
  return `x [${c.x}] filter [${c.filter}] stride ${c.stride} pad ${pad}`;
}

beforeAll(async () => {
  registerGradients();
  await initBackend('cpu');
  await initBackend('wasm');
});

describe('conv2d on wasm matches cpu', () => {
  it.each(CONV_CASES.map((c) => [describeConv(c), c] as const))('%s', async (_name, c) => {
    const expected = await onBackend('cpu', () => convAndGradients(c));
    const actual = await onBackend('wasm', () => withoutLeaks(() => convAndGradients(c)));
    expect(relativeError(actual.y, expected.y)).toBeLessThan(TOLERANCE);
    expect(relativeError(actual.dx, expected.dx)).toBeLessThan(TOLERANCE);
    expect(relativeError(actual.dFilter, expected.dFilter)).toBeLessThan(TOLERANCE);
  });

  it('sums the filter gradient over image chunks when the window matrix would be too large', async () => {
    const c = CONV_CASES[3];
    const expected = await onBackend('cpu', () => convAndGradients(c));
    await onBackend('wasm', () =>
      withoutLeaks(async () => {
        const x = tf.tensor4d(seededValues(tf.util.sizeFromShape(c.x), 1), c.x);
        const dyShape = [2, 4, 4, 16]; // 8x8 input, stride 2, 'same'
        const dy = tf.tensor(seededValues(tf.util.sizeFromShape(dyShape), 3), dyShape);
        const attrs = { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filter };
        // One byte: every chunk holds a single image, so the two partial gradients must be added.
        const info = conv2DBackpropFilter({ inputs: { x, dy }, backend: wasmBackend(), attrs }, 1);
        const dFilter = tf.engine().makeTensorFromTensorInfo(info);
        expect(dFilter.shape).toEqual(c.filter);
        expect(relativeError(await dFilter.data(), expected.dFilter)).toBeLessThan(TOLERANCE);
        tf.dispose([x, dy, dFilter]);
      }),
    );
  });
});

interface MatMulCase {
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
  /** tfjs-core 4.22's matMul gradient does not reduce broadcast batch dimensions, on any backend. */
  withGradients: boolean;
}

/** [m, k] x [k, n], stored transposed where asked, with optional batch dimensions. */
function matMulCases(
  batchA: number[],
  batchB: number[],
  withGradients = true,
  [m, k, n] = [5, 7, 6],
): MatMulCase[] {
  const cases: MatMulCase[] = [];
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      cases.push({
        a: [...batchA, ...(transposeA ? [k, m] : [m, k])],
        b: [...batchB, ...(transposeB ? [n, k] : [k, n])],
        transposeA,
        transposeB,
        withGradients,
      });
    }
  }
  return cases;
}

const MATMUL_CASES: MatMulCase[] = [
  ...matMulCases([], []),
  // A dense layer on a small batch: its input gradient dy·Wᵀ runs as the swapped product (W·dyᵀ)ᵀ.
  ...matMulCases([], [], true, [2, 64, 48]),
  ...matMulCases([3], [3]),
  ...matMulCases([3], [], false),
  ...matMulCases([1], [3], false),
  ...matMulCases([2, 3], [2, 3]),
];

async function matMulAndGradients(c: MatMulCase): Promise<Float32Array[]> {
  const a = tf.tensor(seededValues(tf.util.sizeFromShape(c.a), 4), c.a);
  const b = tf.tensor(seededValues(tf.util.sizeFromShape(c.b), 5), c.b);
  const product = tf.matMul(a, b, c.transposeA, c.transposeB);
  if (!c.withGradients) {
    const values = (await product.data()) as Float32Array;
    tf.dispose([a, b, product]);
    return [values];
  }
  const weights = tf.tensor(seededValues(product.size, 6), product.shape);
  const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) =>
    tf.sum(tf.mul(tf.matMul(p, q, c.transposeA, c.transposeB), weights)),
  )([a, b]);
  const results = [product, da, db].map((t) => t.dataSync() as Float32Array);
  expect(da.shape).toEqual(c.a);
  expect(db.shape).toEqual(c.b);
  tf.dispose([a, b, product, weights, da, db]);
  return results;
}

describe('matMul on wasm matches cpu', () => {
  it.each(
    MATMUL_CASES.map(
      (c) =>
        [
          `[${c.a}]${c.transposeA ? 'ᵀ' : ''} x [${c.b}]${c.transposeB ? 'ᵀ' : ''}` +
            (c.withGradients ? ' with gradients' : ''),
          c,
        ] as const,
    ),
  )('%s', async (_name, c) => {
    const expected = await onBackend('cpu', () => matMulAndGradients(c));
    const actual = await onBackend('wasm', () => withoutLeaks(() => matMulAndGradients(c)));
    expected.forEach((e, i) => expect(relativeError(actual[i], e)).toBeLessThan(TOLERANCE));
  });
});

describe('split on wasm matches cpu', () => {
  const shape = [2, 3, 2, 4, 5];
  it.each([0, 1, 2, 3, 4])(
    'rank-5 split along axis %i into uneven pieces, float32 and int32',
    async (axis) => {
      const sizes = shape[axis] === 2 ? [1, 1] : [1, shape[axis] - 1];
      const run = async () => {
        const values = seededValues(tf.util.sizeFromShape(shape), 10 + axis);
        const floats = tf.tensor(values, shape);
        const ints = tf.tensor(
          Int32Array.from(values, (v) => Math.round(v * 1000)),
          shape,
          'int32',
        );
        const pieces = [...tf.split(floats, sizes, axis), ...tf.split(ints, sizes, axis)];
        const out = await Promise.all(
          pieces.map(async (p) => ({ shape: p.shape, dtype: p.dtype, values: Array.from(await p.data()) })),
        );
        tf.dispose([floats, ints, ...pieces]);
        return out;
      };
      const expected = await onBackend('cpu', run);
      expect(await onBackend('wasm', () => withoutLeaks(run))).toEqual(expected);
    },
  );

  it('the gradient of a concat-based 2x upsample (rank-5 splits)', async () => {
    const run = async () => {
      const x = tf.tensor4d(seededValues(2 * 3 * 4 * 5, 20), [2, 3, 4, 5]);
      const upsample = (t: tf.Tensor) => {
        const columns = tf.reshape(t, [2, 3, 4, 1, 5]);
        const wide = tf.reshape(tf.concat([columns, columns], 3), [2, 3, 1, 8, 5]);
        return tf.reshape(tf.concat([wide, wide], 2), [2, 6, 8, 5]);
      };
      const weights = tf.tensor(seededValues(2 * 6 * 8 * 5, 21), [2, 6, 8, 5]);
      const dx = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(upsample(t), weights)))(x);
      const values = (await dx.data()) as Float32Array;
      tf.dispose([x, weights, dx]);
      return values;
    };
    const expected = await onBackend('cpu', run);
    const actual = await onBackend('wasm', () => withoutLeaks(run));
    expect(relativeError(actual, expected)).toBeLessThan(TOLERANCE);
  });
});

describe('kernel registration', () => {
  it('replaces the slow built-ins, adds the filter gradient and keeps the originals callable', async () => {
    await initBackend('wasm');
    for (const name of ['Conv2DBackpropInput', 'BatchMatMul', '_FusedMatMul', 'SplitV']) {
      const original = originalKernels().get(name);
      expect(original).toBeDefined();
      expect(tf.getKernel(name, 'wasm')!.kernelFunc).not.toBe(original!.kernelFunc);
    }
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  it('fused matMul with transposes, bias and relu matches cpu', async () => {
    const run = async () => {
      const a = tf.tensor(seededValues(35, 7), [7, 5]);
      const b = tf.tensor(seededValues(42, 8), [6, 7]);
      const bias = tf.tensor(seededValues(6, 9), [6]);
      const out = tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias, activation: 'relu' });
      const values = (await out.data()) as Float32Array;
      tf.dispose([a, b, bias, out]);
      return values;
    };
    const expected = await onBackend('cpu', run);
    const actual = await onBackend('wasm', () => withoutLeaks(run));
    expect(relativeError(actual, expected)).toBeLessThan(TOLERANCE);
  });
});
