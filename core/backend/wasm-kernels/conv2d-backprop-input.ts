/**
 * Conv2DBackpropInput for the wasm backend. The built-in one is a naive loop (about 10x slower than the
 * forward conv of the same size); the input gradient is itself a convolution, so we run it through the
 * built-in XNNPACK Conv2D: dx = conv2d(dy, W flipped in space with in/out channels swapped), stride 1,
 * padded by (filter - 1 - forward pad). A strided forward conv first needs dy zero-dilated by its stride.
 */
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { convGeometry } from './conv-geometry';
import { spread } from './spread';
import { flippedTransposedFilter } from './transpose';
import { assertFloat32, withScratch } from './wasm-access';

const UNIT = [1, 1];

function conv2DBackpropInput(args: {
  inputs: { dy: TensorInfo; filter: TensorInfo };
  backend: BackendWasm;
  attrs: NamedAttrMap;
}): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs;
  assertFloat32('Conv2DBackpropInput', dy, filter);
  const g = convGeometry('Conv2DBackpropInput', attrs.inputShape as number[], filter.shape, attrs);
  const expectedDy = [g.batchSize, g.outHeight, g.outWidth, g.outChannels];
  if (dy.shape.join() !== expectedDy.join()) {
    throw new Error(
      `Conv2DBackpropInput: dy has shape [${dy.shape}], the forward conv gives [${expectedDy}]`,
    );
  }
  // Padding of the equivalent stride-1 conv over the dilated dy; negative means rows to drop.
  const top = g.filterHeight - 1 - g.padTop;
  const left = g.filterWidth - 1 - g.padLeft;
  const bottom = g.inHeight + g.padTop - (g.outHeight - 1) * g.strideHeight - 1;
  const right = g.inWidth + g.padLeft - (g.outWidth - 1) * g.strideWidth - 1;

  return withScratch(backend, (s) => {
    const flipped = s.keep(flippedTransposedFilter(backend, filter));

    const unitStride = g.strideHeight === 1 && g.strideWidth === 1;
    if (unitStride && Math.min(top, left, bottom, right) >= 0) {
      const pad = [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, 0],
      ];
      return s.output(
        s.run(
          'Conv2D',
          { x: dy, filter: flipped },
          { strides: UNIT, dilations: UNIT, pad, dataFormat: 'NHWC' },
        ),
      );
    }
    const canvas = s.keep(
      spread(backend, dy, {
        height: g.inHeight + g.filterHeight - 1,
        width: g.inWidth + g.filterWidth - 1,
        top,
        left,
        strideHeight: g.strideHeight,
        strideWidth: g.strideWidth,
      }),
    );
    return s.output(
      s.run(
        'Conv2D',
        { x: canvas, filter: flipped },
        { strides: UNIT, dilations: UNIT, pad: 'valid', dataFormat: 'NHWC' },
      ),
    );
  });
}

export const conv2DBackpropInputConfig: KernelConfig = {
  kernelName: 'Conv2DBackpropInput',
  backendName: 'wasm',
  kernelFunc: conv2DBackpropInput as unknown as KernelFunc,
};
