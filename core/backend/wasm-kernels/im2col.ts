/**
 * Transposed im2col for NHWC convolutions, written straight into the wasm heap. Row (fy, fx, c) of the
 * result holds, for every output pixel (n, y, x), the input value that filter tap (fy, fx, c) multiplied
 * (zero where the window hangs over the padding). Rows are in filter order [fh, fw, inC], columns in dy
 * order [n, y, x], so the filter gradient is one plain matMul with dy as the (small, cheaply packed)
 * right operand and comes out directly in filter layout.
 *
 * The source is x transposed to [inC, N, H, W]: then each (row, n, y) is one contiguous run of input
 * pixels for stride 1, and copyWithin moves it without allocating.
 */
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { ConvGeometry } from './conv-geometry';
import { heapView } from './wasm-access';

/**
 * Builds the [fh * fw * inC, count * outHeight * outWidth] matrix for images [firstImage, firstImage +
 * count) from `xT` = x transposed to [inC, N, H, W]. The caller owns the result.
 */
export function im2colTransposed(
  backend: BackendWasm,
  xT: TensorInfo,
  g: ConvGeometry,
  firstImage: number,
  count: number,
): TensorInfo {
  const { inHeight: h, inWidth: w, outHeight: oh, outWidth: ow } = g;
  const out = backend.makeOutput([g.filterHeight * g.filterWidth * g.inChannels, count * oh * ow], 'float32');
  const { heap, offsetOf } = heapView(backend);
  const xBase = offsetOf(xT);
  let dst = offsetOf(out);

  for (let fy = 0; fy < g.filterHeight; fy++) {
    for (let fx = 0; fx < g.filterWidth; fx++) {
      const shift = fx - g.padLeft;
      // Output columns whose input column x * stride + shift lies inside the image.
      const firstX = Math.max(0, Math.ceil(-shift / g.strideWidth));
      const endX = Math.max(firstX, Math.min(ow, Math.ceil((w - shift) / g.strideWidth)));
      for (let c = 0; c < g.inChannels; c++) {
        for (let n = firstImage; n < firstImage + count; n++) {
          const image = xBase + (c * g.batchSize + n) * h * w;
          for (let y = 0; y < oh; y++) {
            const iy = y * g.strideHeight + fy - g.padTop;
            if (iy < 0 || iy >= h || endX === firstX) {
              heap.fill(0, dst, dst + ow);
            } else {
              heap.fill(0, dst, dst + firstX);
              const row = image + iy * w + shift;
              if (g.strideWidth === 1) {
                heap.copyWithin(dst + firstX, row + firstX, row + endX);
              } else {
                for (let x = firstX; x < endX; x++) heap[dst + x] = heap[row + x * g.strideWidth];
              }
              heap.fill(0, dst + endX, dst + ow);
            }
            dst += ow;
          }
        }
      }
    }
  }
  return out;
}
