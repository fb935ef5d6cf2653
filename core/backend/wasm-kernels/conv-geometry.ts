/**
 * The geometry of an NHWC conv2d as the gradient kernels need it, computed by TF.js's own shape logic so
 * that padding and output sizes agree exactly with the forward op.
 */
import { backend_util, type NamedAttrMap } from '@tensorflow/tfjs-core';

export interface ConvGeometry {
  batchSize: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  padTop: number;
  padLeft: number;
}

type Pad = 'valid' | 'same' | number | backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

export function convGeometry(
  kernelName: string,
  inputShape: number[],
  filterShape: number[],
  attrs: NamedAttrMap,
): ConvGeometry {
  const dataFormat = attrs.dataFormat as string | undefined;
  if (dataFormat !== undefined && dataFormat !== 'NHWC') {
    throw new Error(`${kernelName} on wasm supports dataFormat NHWC only, got ${dataFormat}: use NHWC`);
  }
  if (inputShape.length !== 4 || filterShape.length !== 4) {
    throw new Error(
      `${kernelName} on wasm needs a rank-4 input and filter, got [${inputShape}] and [${filterShape}]`,
    );
  }
  const info = backend_util.computeConv2DInfo(
    inputShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides as number | [number, number],
    1,
    attrs.pad as Pad,
    attrs.dimRoundingMode as Rounding,
    false,
    'channelsLast',
  );
  return {
    batchSize: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    outChannels: info.outChannels,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}
