/**
 * Typed access to the pieces of the TF.js wasm backend our training kernels build on: its built-in kernels
 * (called directly, without the engine, so nothing is tracked or taped) and its heap (for the copy loops
 * that are cheaper in JS than as a chain of Slice/Concat kernels).
 */
import {
  getKernel,
  util,
  type KernelConfig,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** Inputs of a kernel call: a name per input tensor (a list for kernels such as Concat). */
export type KernelInputs = Record<string, TensorInfo> | TensorInfo[];

/**
 * Where the built-in wasm kernels that we replace are kept. A global symbol, not a module variable, so that
 * a second copy of this module (jest module resets, two bundles) still finds the original and never wraps a
 * replacement in another replacement.
 */
const ORIGINALS_KEY = Symbol.for('ddpm.wasmTrainingKernels.originals');

export function originalKernels(): Map<string, KernelConfig> {
  const holder = globalThis as unknown as Record<symbol, Map<string, KernelConfig> | undefined>;
  let originals = holder[ORIGINALS_KEY];
  if (originals === undefined) {
    originals = new Map();
    holder[ORIGINALS_KEY] = originals;
  }
  return originals;
}

/** The wasm backend's own implementation of a kernel, even when ours has replaced it in the registry. */
export function builtinKernel(kernelName: string): KernelConfig {
  const config = originalKernels().get(kernelName) ?? getKernel(kernelName, 'wasm');
  if (config === undefined) {
    throw new Error(`wasm kernel ${kernelName} is not registered: load @tensorflow/tfjs-backend-wasm first`);
  }
  return config;
}

/** Runs a built-in wasm kernel that returns one tensor. The caller owns (and must dispose) the result. */
export function runBuiltin(
  backend: BackendWasm,
  kernelName: string,
  inputs: KernelInputs,
  attrs: NamedAttrMap = {},
): TensorInfo {
  const result = builtinKernel(kernelName).kernelFunc({
    inputs: inputs as Record<string, TensorInfo>,
    backend,
    attrs,
  });
  if (Array.isArray(result)) {
    throw new Error(`wasm kernel ${kernelName} returned ${result.length} tensors where one was expected`);
  }
  return result;
}

/**
 * Collects the intermediate tensors of one kernel call so that all of them are released, also when the call
 * throws: the engine never sees them, so nothing else would ever free their wasm memory.
 */
export class Scratch {
  private readonly held: TensorInfo[] = [];

  constructor(private readonly backend: BackendWasm) {}

  keep<T extends TensorInfo>(info: T): T {
    this.held.push(info);
    return info;
  }

  /** Runs a built-in kernel and keeps its result for disposal. */
  run(kernelName: string, inputs: KernelInputs, attrs: NamedAttrMap = {}): TensorInfo {
    return this.keep(runBuiltin(this.backend, kernelName, inputs, attrs));
  }

  /** A view with a new shape; shares the data (wasm Reshape only bumps a reference count). */
  reshape(x: TensorInfo, shape: number[]): TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  /**
   * The kernel's result: its own reference to `info`'s data (so disposing the scratch leaves it alive),
   * optionally under a new shape of the same size.
   */
  output(info: TensorInfo, shape: number[] = info.shape): TensorInfo {
    this.backend.incRef(info.dataId);
    return { dataId: info.dataId, shape, dtype: info.dtype };
  }

  disposeAll(): void {
    for (const info of this.held.splice(0)) this.backend.disposeData(info.dataId);
  }
}

/** Runs `body` with a fresh Scratch and frees every intermediate afterwards, whatever happens. */
export function withScratch<T>(backend: BackendWasm, body: (scratch: Scratch) => T): T {
  const scratch = new Scratch(backend);
  try {
    return body(scratch);
  } finally {
    scratch.disposeAll();
  }
}

/**
 * A float32 view of the whole wasm heap plus element offsets of tensors in it. Take it after the last
 * allocation of a step: growing the heap replaces its buffer and detaches older views.
 */
export interface HeapView {
  heap: Float32Array;
  /** Element offset of a tensor's data in `heap`. */
  offsetOf(info: TensorInfo): number;
}

// Emscripten's module typings are not shipped with the package; the heap views exist at runtime.
type HeapModule = { HEAPF32: Float32Array; HEAPU8: Uint8Array };

export function heapView(backend: BackendWasm): HeapView {
  const heap = (backend.wasm as unknown as HeapModule).HEAPF32;
  return {
    heap,
    offsetOf: (info) => backend.dataIdMap.get(info.dataId)!.memoryOffset / Float32Array.BYTES_PER_ELEMENT,
  };
}

/** The wasm heap as bytes and byte offsets of tensors in it; same caveat as heapView. */
export function heapBytes(backend: BackendWasm): {
  bytes: Uint8Array;
  byteOffsetOf(info: TensorInfo): number;
} {
  return {
    bytes: (backend.wasm as unknown as HeapModule).HEAPU8,
    byteOffsetOf: (info) => backend.dataIdMap.get(info.dataId)!.memoryOffset,
  };
}

/**
 * Elements [start, start + size) of a tensor's data as a new tensor of `shape`, by one memmove. (The wasm
 * Slice kernel first copies the whole input out of the heap, which makes slicing a big tensor into many
 * pieces quadratic.) The caller owns the result.
 */
export function contiguousPart(
  backend: BackendWasm,
  x: TensorInfo,
  start: number,
  shape: number[],
): TensorInfo {
  const out = backend.makeOutput(shape, x.dtype);
  const { bytes, byteOffsetOf } = heapBytes(backend);
  const elementBytes = util.bytesPerElement(x.dtype);
  const from = byteOffsetOf(x) + start * elementBytes;
  bytes.copyWithin(byteOffsetOf(out), from, from + util.sizeFromShape(shape) * elementBytes);
  return out;
}

export function assertFloat32(kernelName: string, ...infos: TensorInfo[]): void {
  for (const info of infos) {
    if (info.dtype !== 'float32') {
      throw new Error(
        `${kernelName} on wasm supports float32 only, got ${info.dtype}: cast the inputs first`,
      );
    }
  }
}
