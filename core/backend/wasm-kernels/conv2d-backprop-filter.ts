/**
 * Conv2DBackpropFilter for the wasm backend, which ships no such kernel. The filter gradient is one plain
 * matMul per chunk of images, dW [fh*fw*inC, outC] = im2colᵀ(x) [fh*fw*inC, pixels] x dy [pixels, outC],
 * run by XNNPACK through the built-in BatchMatMul (its fast path: batch 1, no transposes). dy is the
 * right operand, which XNNPACK repacks on every call, because it is far smaller than the window matrix.
 */
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { convGeometry, type ConvGeometry } from './conv-geometry';
import { im2colTransposed } from './im2col';
import { transposeMatrices } from './transpose';
import { assertFloat32, contiguousPart, withScratch, type Scratch } from './wasm-access';

/**
 * Upper bound for one window matrix. Larger batches are processed in chunks of images whose partial
 * gradients are summed, so that a 9x copy of a large activation cannot exhaust the 4 GiB wasm heap.
 */
const MAX_WINDOW_MATRIX_BYTES = 128 * 1024 * 1024;

export interface BackpropFilterArgs {
  inputs: { x: TensorInfo; dy: TensorInfo };
  backend: BackendWasm;
  attrs: NamedAttrMap;
}

/** The kernel; `maxWindowMatrixBytes` is a parameter only so that tests can force the chunked path. */
export function conv2DBackpropFilter(
  args: BackpropFilterArgs,
  maxWindowMatrixBytes = MAX_WINDOW_MATRIX_BYTES,
): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  assertFloat32('Conv2DBackpropFilter', x, dy);
  const filterShape = attrs.filterShape as number[];
  const g = convGeometry('Conv2DBackpropFilter', x.shape, filterShape, attrs);
  const windowLength = g.filterHeight * g.filterWidth * g.inChannels;
  const pixelsPerImage = g.outHeight * g.outWidth;
  const imagesPerChunk = Math.max(
    1,
    Math.floor(maxWindowMatrixBytes / (pixelsPerImage * windowLength * Float32Array.BYTES_PER_ELEMENT)),
  );

  return withScratch(backend, (s) => {
    // [N, H, W, C] -> [C, N, H, W]: one matrix transpose of [N*H*W, C].
    const xT = s.keep(transposeMatrices(backend, x, 1, g.batchSize * g.inHeight * g.inWidth, g.inChannels));
    let sum: TensorInfo | null = null;
    for (let first = 0; first < g.batchSize; first += imagesPerChunk) {
      const count = Math.min(imagesPerChunk, g.batchSize - first);
      const part = chunkGradient(s, backend, xT, dy, g, first, count);
      sum = sum === null ? part : s.run('Add', { a: sum, b: part });
    }
    return s.output(sum!, filterShape);
  });
}

/** The gradient from images [first, first + count) as [1, fh*fw*inC, outC]. */
function chunkGradient(
  s: Scratch,
  backend: BackendWasm,
  xT: TensorInfo,
  dy: TensorInfo,
  g: ConvGeometry,
  first: number,
  count: number,
): TensorInfo {
  const pixels = count * g.outHeight * g.outWidth;
  const windowLength = g.filterHeight * g.filterWidth * g.inChannels;
  const wholeBatch = count === g.batchSize;
  const pixelsBefore = first * g.outHeight * g.outWidth;
  const dyChunk = wholeBatch
    ? dy
    : s.keep(contiguousPart(backend, dy, pixelsBefore * g.outChannels, [pixels, g.outChannels]));

  // A 1x1, stride-1, unpadded conv reads each input pixel once: xT already is the window matrix.
  const pointwise =
    g.filterHeight === 1 &&
    g.filterWidth === 1 &&
    g.strideHeight === 1 &&
    g.strideWidth === 1 &&
    g.padTop === 0 &&
    g.padLeft === 0 &&
    g.outHeight === g.inHeight &&
    g.outWidth === g.inWidth;
  const windows = pointwise && wholeBatch ? xT : s.keep(im2colTransposed(backend, xT, g, first, count));
  return s.run(
    'BatchMatMul',
    { a: s.reshape(windows, [1, windowLength, pixels]), b: s.reshape(dyChunk, [1, pixels, g.outChannels]) },
    { transposeA: false, transposeB: false },
  );
}

export const conv2DBackpropFilterConfig: KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: ((args: BackpropFilterArgs) => conv2DBackpropFilter(args)) as unknown as KernelFunc,
};
