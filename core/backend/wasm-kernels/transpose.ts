/**
 * Matrix transposes written straight into the wasm heap. The wasm backend's Transpose kernel is a generic
 * N-d loop that costs about 30-50 ns per element (measured: 590k elements, a 3x3x256x256 filter, take
 * ~25 ms); the matMul and conv-gradient paths transpose whole activations and filters on every call, so a
 * tiled 2-D transpose, which the JIT turns into a tight loop, pays for itself many times over.
 */
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapView } from './wasm-access';

/** Square tiles keep both the reads and the writes of a tile within a few cache lines. */
const TILE = 32;

/** Writes the [cols, rows] transpose of the row-major [rows, cols] matrix at `src` to `dst`. */
export function transposeBlock(
  heap: Float32Array,
  src: number,
  dst: number,
  rows: number,
  cols: number,
): void {
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(r0 + TILE, rows);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(c0 + TILE, cols);
      for (let c = c0; c < c1; c++) {
        let from = src + r0 * cols + c;
        let to = dst + c * rows + r0;
        for (let r = r0; r < r1; r++) {
          heap[to++] = heap[from];
          from += cols;
        }
      }
    }
  }
}

/**
 * [batch, rows, cols] -> [batch, cols, rows] for a float32 tensor whose data holds `batch` row-major
 * matrices (any shape with that many elements; the result has shape [batch, cols, rows]). The caller
 * owns the result.
 */
export function transposeMatrices(
  backend: BackendWasm,
  x: TensorInfo,
  batch: number,
  rows: number,
  cols: number,
): TensorInfo {
  const out = backend.makeOutput([batch, cols, rows], 'float32');
  const { heap, offsetOf } = heapView(backend);
  const src = offsetOf(x);
  const dst = offsetOf(out);
  const size = rows * cols;
  for (let b = 0; b < batch; b++) transposeBlock(heap, src + b * size, dst + b * size, rows, cols);
  return out;
}

/**
 * The filter of the conv that computes an input gradient: W [fh, fw, inC, outC] flipped in space with
 * the channel axes swapped, W'[i, j, o, c] = W[fh-1-i, fw-1-j, c, o]. The caller owns the result.
 */
export function flippedTransposedFilter(backend: BackendWasm, filter: TensorInfo): TensorInfo {
  const [fh, fw, inC, outC] = filter.shape;
  const out = backend.makeOutput([fh, fw, outC, inC], 'float32');
  const { heap, offsetOf } = heapView(backend);
  const src = offsetOf(filter);
  const dst = offsetOf(out);
  const tapSize = inC * outC;
  for (let i = 0; i < fh; i++) {
    for (let j = 0; j < fw; j++) {
      const fromTap = (fh - 1 - i) * fw + (fw - 1 - j);
      transposeBlock(heap, src + fromTap * tapSize, dst + (i * fw + j) * tapSize, inC, outC);
    }
  }
  return out;
}
