/** XNNPACK compiled to WebAssembly, with our training kernels (the package's own cannot train fast). */
import * as tf from '@tensorflow/tfjs-core';
import { loadPackage } from '../load-package';
import type { Candidate } from '../candidate';
import { guardWasmAllocations } from '../out-of-memory';
import { registerWasmTrainingKernels } from '../wasm-kernels/register';
import { activate } from './activate';

type WasmPackage = typeof import('@tensorflow/tfjs-backend-wasm');

export const wasmCandidate: Candidate = {
  name: 'wasm',
  async probe() {
    if (typeof (globalThis as { WebAssembly?: unknown }).WebAssembly !== 'object')
      return { ok: false, reason: 'this runtime has no WebAssembly' };
    const loaded = loadPackage<WasmPackage>('@tensorflow/tfjs-backend-wasm');
    return loaded.ok ? { ok: true } : loaded;
  },
  async start() {
    const loaded = loadPackage<WasmPackage>('@tensorflow/tfjs-backend-wasm');
    if (!loaded.ok) throw new Error(loaded.reason);
    registerWasmTrainingKernels();
    await activate('wasm');
    guardWasmAllocations(tf.backend());
    const simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) ? 'SIMD' : 'no SIMD';
    const threads = loaded.module.getThreadsCount();
    return {
      name: 'wasm',
      detail: `wasm ${simd}, ${threads} thread${threads === 1 ? '' : 's'}, training kernels`,
    };
  },
};
