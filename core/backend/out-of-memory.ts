/**
 * Out-of-memory, recognised in one place. Backends report it in their own ways: native TensorFlow
 * throws an Error whose message carries TF status 8 (RESOURCE_EXHAUSTED, "OOM when allocating ..."); the
 * wasm backend's malloc returns 0 and TF.js writes through that null pointer anyway, corrupting the heap
 * (hence the guard below, which turns it into a typed error first); a micro-batch built in JS can fail
 * its typed-array allocation with a RangeError.
 */
import { BackendOutOfMemoryError } from '../errors';

/** The wasm heap is 32-bit: no single allocation beyond this can succeed (emscripten's getHeapMax). */
const WASM_HEAP_MAX_BYTES = 4294901760;

const NATIVE_OOM = /OOM when allocating|TF_Status: 8\b|RESOURCE_EXHAUSTED/;
const JS_OOM = /Array buffer allocation failed|Invalid typed array length|Invalid array buffer length/;

/** The error as a BackendOutOfMemoryError if it means the backend ran out of memory, else null. */
export function asOutOfMemory(err: unknown): BackendOutOfMemoryError | null {
  if (err instanceof BackendOutOfMemoryError) return err;
  if (typeof err !== 'object' || err === null) return null;
  const message = String((err as Error).message ?? '');
  if (NATIVE_OOM.test(message)) {
    const detail = /OOM when allocating[^\n]*?shape\[[^\]]*\]/.exec(message)?.[0] ?? message.split('\n')[0];
    return new BackendOutOfMemoryError(`tensorflow: ${detail}`);
  }
  if ((err as Error).name === 'RangeError' && JS_OOM.test(message)) {
    return new BackendOutOfMemoryError(`JS: ${message}`);
  }
  return null;
}

interface WasmModule {
  _malloc: (bytes: number) => number;
  asm?: { malloc?: (bytes: number) => number };
  HEAPU8: Uint8Array;
}

const GUARDED = Symbol.for('ddpm.wasmAllocationGuard');

/**
 * Makes the wasm backend throw BackendOutOfMemoryError when an allocation cannot succeed, before TF.js
 * writes a tensor through a null pointer (which corrupts the heap and breaks every later operation of
 * the process). `backend` is the active wasm backend (tf.backend()).
 */
export function guardWasmAllocations(backend: unknown): void {
  const wasm = (backend as { wasm?: WasmModule & { [GUARDED]?: true } }).wasm;
  if (!wasm || wasm[GUARDED]) return;
  const original = wasm._malloc;
  // Emscripten's _malloc export replaces itself with the raw export on first call; call the raw one.
  const malloc = (bytes: number) => (wasm.asm?.malloc ?? original)(bytes);
  wasm._malloc = (bytes: number) => {
    if (bytes > WASM_HEAP_MAX_BYTES) {
      throw new BackendOutOfMemoryError(
        `wasm: a ${bytes}-byte tensor exceeds the ${WASM_HEAP_MAX_BYTES}-byte wasm heap`,
      );
    }
    const pointer = malloc(bytes);
    if (pointer === 0 && bytes > 0) {
      throw new BackendOutOfMemoryError(
        `wasm: out of memory allocating ${bytes} bytes (heap ${wasm.HEAPU8.length} bytes, at most ${WASM_HEAP_MAX_BYTES})`,
      );
    }
    return pointer;
  };
  wasm[GUARDED] = true;
}
