/**
 * Spreads an NHWC gradient onto a zero canvas: pixel (y, x) goes to (top + y * strideHeight,
 * left + x * strideWidth), pixels that land outside the canvas are dropped. This is the zero-dilation and
 * padding that turn the input gradient of a strided conv into a plain stride-1 'valid' conv.
 */
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapView } from './wasm-access';

export interface SpreadLayout {
  height: number;
  width: number;
  top: number;
  left: number;
  strideHeight: number;
  strideWidth: number;
}

/** Returns the [N, height, width, C] canvas; the caller owns it. */
export function spread(backend: BackendWasm, dy: TensorInfo, layout: SpreadLayout): TensorInfo {
  const [batch, rows, cols, channels] = dy.shape;
  const out = backend.makeOutput([batch, layout.height, layout.width, channels], 'float32');
  const { heap, offsetOf } = heapView(backend);
  const outBase = offsetOf(out);
  const dyBase = offsetOf(dy);
  const outImage = layout.height * layout.width * channels;
  heap.fill(0, outBase, outBase + batch * outImage);

  for (let n = 0; n < batch; n++) {
    for (let y = 0; y < rows; y++) {
      const r = layout.top + y * layout.strideHeight;
      if (r < 0 || r >= layout.height) continue;
      for (let x = 0; x < cols; x++) {
        const c = layout.left + x * layout.strideWidth;
        if (c < 0 || c >= layout.width) continue;
        const src = dyBase + ((n * rows + y) * cols + x) * channels;
        const dst = outBase + n * outImage + (r * layout.width + c) * channels;
        heap.copyWithin(dst, src, src + channels);
      }
    }
  }
  return out;
}
