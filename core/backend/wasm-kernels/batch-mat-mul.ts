/**
 * BatchMatMul for the wasm backend. The built-in kernel reaches XNNPACK only for a single matrix pair
 * without transposes; a transposed operand or a batch of more than one falls into a naive blocked loop
 * (about 10x slower, and autodiff of every matMul produces transposed ones). Here operands are transposed
 * explicitly (a cheap copy), a single product may be computed as Cᵀ = Bᵀ·Aᵀ when that packs less, and
 * batches are fed to XNNPACK either as one tall matrix (when the right operand is shared) or one matrix
 * pair at a time.
 */
import {
  broadcast_util,
  util,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { transposeMatrices } from './transpose';
import { contiguousPart, runBuiltin, withScratch, type Scratch } from './wasm-access';

const NO_TRANSPOSE = { transposeA: false, transposeB: false };

/** Reshapes to [batch, rows, cols] with rows/cols as used in the product (transposing when asked). */
function asBatchOfMatrices(s: Scratch, backend: BackendWasm, t: TensorInfo, transpose: boolean): TensorInfo {
  const rank = t.shape.length;
  const batch = util.sizeFromShape(t.shape.slice(0, -2));
  const [r, c] = [t.shape[rank - 2], t.shape[rank - 1]];
  return transpose ? s.keep(transposeMatrices(backend, t, batch, r, c)) : s.reshape(t, [batch, r, c]);
}

/**
 * Whether C = A·B is cheaper as Cᵀ = Bᵀ·Aᵀ. Besides the multiply itself, a call costs its explicit
 * transposes plus XNNPACK packing its right operand (every call, for a tensor it has not seen). For a
 * product with few rows, such as the input gradient dy·Wᵀ of a dense layer on a small batch, packing the
 * big weight dwarfs the arithmetic, and the swapped form packs the small operand instead.
 */
function swappedIsCheaper(
  m: number,
  k: number,
  n: number,
  transposeA: boolean,
  transposeB: boolean,
): boolean {
  const direct = (transposeA ? m * k : 0) + (transposeB ? k * n : 0) + k * n;
  const swapped = (transposeB ? 0 : k * n) + (transposeA ? 0 : m * k) + m * k + m * n;
  return swapped < direct;
}

/** Cᵀ = Bᵀ·Aᵀ for single matrices, transposed back: [1, m, n]. */
function swappedProduct(
  s: Scratch,
  backend: BackendWasm,
  a: TensorInfo,
  b: TensorInfo,
  [m, k, n]: [number, number, number],
  transposeA: boolean,
  transposeB: boolean,
): TensorInfo {
  // A transposed operand is already stored the way the swapped product wants it.
  const bT = transposeB ? s.reshape(b, [1, n, k]) : s.keep(transposeMatrices(backend, b, 1, k, n));
  const aT = transposeA ? s.reshape(a, [1, k, m]) : s.keep(transposeMatrices(backend, a, 1, m, k));
  const productT = s.run('BatchMatMul', { a: bT, b: aT }, NO_TRANSPOSE);
  return s.keep(transposeMatrices(backend, productT, 1, n, m));
}

function batchMatMul(args: {
  inputs: { a: TensorInfo; b: TensorInfo };
  backend: BackendWasm;
  attrs: NamedAttrMap;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { a, b } = inputs;
  const transposeA = attrs.transposeA as boolean;
  const transposeB = attrs.transposeB as boolean;
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) {
    return runBuiltin(backend, 'BatchMatMul', inputs, attrs);
  }
  const outerShape = broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const [aRows, aCols] = a.shape.slice(-2);
  const [bRows, bCols] = b.shape.slice(-2);
  const [m, k] = transposeA ? [aCols, aRows] : [aRows, aCols];
  const [kb, n] = transposeB ? [bCols, bRows] : [bRows, bCols];
  if (k !== kb) {
    throw new Error(
      `matMul inner dimensions differ: [${a.shape}]${transposeA ? 'ᵀ' : ''} x [${b.shape}]${transposeB ? 'ᵀ' : ''}`,
    );
  }
  const outShape = [...outerShape, m, n];
  const batchA = util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = util.sizeFromShape(b.shape.slice(0, -2));

  return withScratch(backend, (s) => {
    if (batchA === 1 && batchB === 1 && swappedIsCheaper(m, k, n, transposeA, transposeB)) {
      return s.output(swappedProduct(s, backend, a, b, [m, k, n], transposeA, transposeB), outShape);
    }
    const a3 = asBatchOfMatrices(s, backend, a, transposeA);
    const b3 = asBatchOfMatrices(s, backend, b, transposeB);
    if (batchB === 1) {
      // A shared right operand: all left matrices stacked into one tall matrix, a single XNNPACK call.
      const product = s.run('BatchMatMul', { a: s.reshape(a3, [1, batchA * m, k]), b: b3 }, NO_TRANSPOSE);
      return s.output(product, outShape);
    }
    const parts: TensorInfo[] = [];
    for (let i = 0; i < Math.max(batchA, batchB); i++) {
      // The built-in kernel broadcasts by taking the batch index modulo each operand's batch size.
      const ai = matrixAt(s, backend, a3, i % batchA);
      const bi = matrixAt(s, backend, b3, i % batchB);
      parts.push(s.run('BatchMatMul', { a: ai, b: bi }, NO_TRANSPOSE));
    }
    return s.output(s.run('Concat', parts, { axis: 0 }), outShape);
  });
}

function matrixAt(s: Scratch, backend: BackendWasm, cube: TensorInfo, index: number): TensorInfo {
  const [batch, r, c] = cube.shape;
  if (batch === 1) return cube;
  return s.keep(contiguousPart(backend, cube, index * r * c, [1, r, c]));
}

export const batchMatMulConfig: KernelConfig = {
  kernelName: 'BatchMatMul',
  backendName: 'wasm',
  kernelFunc: batchMatMul as unknown as KernelFunc,
};
