/**
 * Micro-benchmark of the wasm training kernels: ms per call for conv2d forward, input gradient and filter
 * gradient, and for transposed / batched matMuls, built-in wasm kernel vs ours where a built-in exists,
 * plus the conv kernels on native TensorFlow (tfjs-node) for scale when it loads.
 * Prints one JSON document; times are the best of --repeats calls (default 5).
 * Run: npx tsx bench/wasm-kernels.ts [--repeats N]
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { initBackend } from '../core/backend';
import { originalKernels } from '../core/backend/wasm-kernels/wasm-access';

interface ConvCase {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride: number;
}

const CONV_CASES: ConvCase[] = [
  { name: 'cifar 4x32x32 128->128 3x3', x: [4, 32, 32, 128], filter: [3, 3, 128, 128], stride: 1 },
  { name: '4x16x16 256->256 3x3', x: [4, 16, 16, 256], filter: [3, 3, 256, 256], stride: 1 },
  {
    name: 'downsample 4x32x32 128->128 3x3 stride 2',
    x: [4, 32, 32, 128],
    filter: [3, 3, 128, 128],
    stride: 2,
  },
];

interface MatMulCase {
  name: string;
  a: number[];
  b: number[];
  transposeA: boolean;
  transposeB: boolean;
}

const MATMUL_CASES: MatMulCase[] = [
  {
    name: 'dense grad a^T b 4096x512 . 4096x512',
    a: [4096, 512],
    b: [4096, 512],
    transposeA: true,
    transposeB: false,
  },
  {
    name: 'dense grad a b^T 4096x512 . 512x512',
    a: [4096, 512],
    b: [512, 512],
    transposeA: false,
    transposeB: true,
  },
  {
    name: 'attention q k^T 4x256x256 . 4x256x256',
    a: [4, 256, 256],
    b: [4, 256, 256],
    transposeA: false,
    transposeB: true,
  },
];

function repeatsFromArgs(): number {
  const i = process.argv.indexOf('--repeats');
  return i >= 0 ? Number(process.argv[i + 1]) : 5;
}

/**
 * Best wall time of `repeats` calls after one warm-up (on a shared machine the minimum is the least noisy
 * estimate of a kernel's own cost). `call` must free what it creates.
 */
function bestMs(call: () => void, repeats: number): number {
  call();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    call();
    times.push(performance.now() - start);
  }
  return Math.round(Math.min(...times) * 10) / 10;
}

/** Calls one wasm kernel function directly (the built-in one if asked) and frees its result. */
function wasmKernelCall(
  name: string,
  builtin: boolean,
  inputs: tf.NamedTensorInfoMap,
  attrs: tf.NamedAttrMap,
) {
  const config = builtin ? originalKernels().get(name) : tf.getKernel(name, 'wasm');
  if (config === undefined) throw new Error(`no ${builtin ? 'built-in ' : ''}wasm kernel ${name}`);
  const backend = tf.backend() as BackendWasm;
  return () => {
    const out = config.kernelFunc({ inputs, backend, attrs });
    for (const info of Array.isArray(out) ? out : [out]) backend.disposeData(info.dataId);
  };
}

/** Runs a kernel through the engine on the active backend (used for native TensorFlow) and frees it. */
function engineKernelCall(name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) {
  return () => tf.dispose(tf.engine().runKernel(name, inputs, attrs) as tf.Tensor);
}

interface ConvTensors {
  x: tf.Tensor;
  filter: tf.Tensor;
  dy: tf.Tensor;
  convAttrs: tf.NamedAttrMap;
  inputAttrs: tf.NamedAttrMap;
  filterAttrs: tf.NamedAttrMap;
}

function convTensors(c: ConvCase): ConvTensors {
  const x = tf.randomNormal(c.x);
  const filter = tf.randomNormal(c.filter, 0, 0.05);
  const outSize = (n: number) => Math.ceil(n / c.stride);
  const dy = tf.randomNormal([c.x[0], outSize(c.x[1]), outSize(c.x[2]), c.filter[3]]);
  const convAttrs = { strides: c.stride, pad: 'same', dataFormat: 'NHWC', dilations: 1 };
  return {
    x,
    filter,
    dy,
    convAttrs,
    inputAttrs: { ...convAttrs, inputShape: c.x },
    filterAttrs: { ...convAttrs, filterShape: c.filter },
  };
}

function benchWasmConv(c: ConvCase, repeats: number): Record<string, unknown> {
  const t = convTensors(c);
  const { x, filter, dy } = t;
  const result = {
    case: c.name,
    conv2dForwardMs: bestMs(wasmKernelCall('Conv2D', false, { x, filter }, t.convAttrs), repeats),
    backpropInputBuiltinMs: bestMs(
      wasmKernelCall('Conv2DBackpropInput', true, { dy, filter }, t.inputAttrs),
      Math.min(repeats, 3),
    ),
    backpropInputOursMs: bestMs(
      wasmKernelCall('Conv2DBackpropInput', false, { dy, filter }, t.inputAttrs),
      repeats,
    ),
    backpropFilterBuiltinMs: null, // the wasm backend has no Conv2DBackpropFilter
    backpropFilterOursMs: bestMs(
      wasmKernelCall('Conv2DBackpropFilter', false, { x, dy }, t.filterAttrs),
      repeats,
    ),
  };
  tf.dispose([x, filter, dy]);
  return result;
}

function benchEngineConv(c: ConvCase, repeats: number): Record<string, unknown> {
  const t = convTensors(c);
  const { x, filter, dy } = t;
  const result = {
    case: c.name,
    conv2dForwardMs: bestMs(engineKernelCall('Conv2D', { x, filter }, t.convAttrs), repeats),
    backpropInputMs: bestMs(engineKernelCall('Conv2DBackpropInput', { dy, filter }, t.inputAttrs), repeats),
    backpropFilterMs: bestMs(engineKernelCall('Conv2DBackpropFilter', { x, dy }, t.filterAttrs), repeats),
  };
  tf.dispose([x, filter, dy]);
  return result;
}

function benchWasmMatMul(c: MatMulCase, repeats: number): Record<string, unknown> {
  const a = tf.randomNormal(c.a);
  const b = tf.randomNormal(c.b);
  const attrs = { transposeA: c.transposeA, transposeB: c.transposeB };
  const result = {
    case: c.name,
    builtinMs: bestMs(wasmKernelCall('BatchMatMul', true, { a, b }, attrs), Math.min(repeats, 3)),
    oursMs: bestMs(wasmKernelCall('BatchMatMul', false, { a, b }, attrs), repeats),
  };
  tf.dispose([a, b]);
  return result;
}

/** The same kernels on native TensorFlow (tfjs-node), for scale; null where it does not start. */
async function nativeReference(repeats: number): Promise<Record<string, unknown> | null> {
  try {
    const info = await initBackend('tensorflow');
    return { backend: info, conv: CONV_CASES.map((c) => benchEngineConv(c, repeats)) };
  } catch (err) {
    return { unavailable: err instanceof Error ? err.message : String(err) };
  }
}

async function main(): Promise<void> {
  const repeats = repeatsFromArgs();
  const info = await initBackend('wasm');
  const conv = CONV_CASES.map((c) => benchWasmConv(c, repeats));
  const matMul = MATMUL_CASES.map((c) => benchWasmMatMul(c, repeats));
  const tensorflow = await nativeReference(repeats);
  console.log(JSON.stringify({ backend: info, repeats, conv, matMul, tensorflow }, null, 2));
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
