/**
 * _FusedMatMul (matMul + bias + activation) for the wasm backend: like BatchMatMul, the built-in kernel is
 * fast only without transposes, so transposed operands are copied into plain layout first.
 */
import {
  util,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { transposeMatrices } from './transpose';
import { runBuiltin, withScratch, type Scratch } from './wasm-access';

/** The same matrices with their last two axes swapped, outer axes kept. */
function swappedLastTwo(s: Scratch, backend: BackendWasm, t: TensorInfo): TensorInfo {
  const rank = t.shape.length;
  const [rows, cols] = [t.shape[rank - 2], t.shape[rank - 1]];
  const swapped = s.keep(transposeMatrices(backend, t, util.sizeFromShape(t.shape.slice(0, -2)), rows, cols));
  return s.reshape(swapped, [...t.shape.slice(0, -2), cols, rows]);
}

function fusedMatMul(args: {
  inputs: Record<string, TensorInfo>;
  backend: BackendWasm;
  attrs: NamedAttrMap;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { a, b } = inputs;
  const plain = !attrs.transposeA && !attrs.transposeB;
  if (plain || a.dtype !== 'float32' || b.dtype !== 'float32') {
    return runBuiltin(backend, '_FusedMatMul', inputs, attrs);
  }
  return withScratch(backend, (s) =>
    runBuiltin(
      backend,
      '_FusedMatMul',
      {
        ...inputs,
        a: attrs.transposeA ? swappedLastTwo(s, backend, a) : a,
        b: attrs.transposeB ? swappedLastTwo(s, backend, b) : b,
      },
      { ...attrs, transposeA: false, transposeB: false },
    ),
  );
}

export const fusedMatMulConfig: KernelConfig = {
  kernelName: '_FusedMatMul',
  backendName: 'wasm',
  kernelFunc: fusedMatMul as unknown as KernelFunc,
};
