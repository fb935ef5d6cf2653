/**
 * Installs our training kernels into the wasm backend's kernel registry, replacing the slow built-ins and
 * adding the missing Conv2DBackpropFilter. Safe to call any number of times, before or after the wasm
 * backend is initialised.
 */
import { getKernel, registerKernel, unregisterKernel, type KernelConfig } from '@tensorflow/tfjs-core';
import { loadPackage } from '../load-package';
import { batchMatMulConfig } from './batch-mat-mul';
import { conv2DBackpropFilterConfig } from './conv2d-backprop-filter';
import { conv2DBackpropInputConfig } from './conv2d-backprop-input';
import { fusedMatMulConfig } from './fused-mat-mul';
import { splitVConfig } from './split-v';
import { originalKernels } from './wasm-access';

const REPLACEMENTS: KernelConfig[] = [
  conv2DBackpropFilterConfig,
  conv2DBackpropInputConfig,
  batchMatMulConfig,
  fusedMatMulConfig,
  splitVConfig,
];

/** Marks registry entries as ours, also across copies of this module. */
const OURS = Symbol.for('ddpm.wasmTrainingKernel');

function isOurs(config: KernelConfig): boolean {
  return (config as unknown as Record<symbol, unknown>)[OURS] === true;
}

export function registerWasmTrainingKernels(): void {
  // The built-ins must be registered first: we keep them to call, and a later package load would
  // otherwise overwrite our replacements.
  const wasm = loadPackage('@tensorflow/tfjs-backend-wasm');
  if (!wasm.ok) throw new Error(`cannot register wasm training kernels: ${wasm.reason}`);

  const originals = originalKernels();
  for (const replacement of REPLACEMENTS) {
    const name = replacement.kernelName;
    const current = getKernel(name, 'wasm');
    if (current !== undefined) {
      if (!isOurs(current)) originals.set(name, current);
      unregisterKernel(name, 'wasm');
    }
    const original = originals.get(name);
    // The original's setupFunc still has to run when the backend starts: our kernels call into it.
    registerKernel({
      ...replacement,
      setupFunc: original?.setupFunc,
      disposeFunc: original?.disposeFunc,
      [OURS]: true,
    } as KernelConfig);
  }
}
