/**
 * Native TensorFlow (tfjs-node, see infra/tfjs-native/) vs wasm (with our training kernels) on the U-Net's
 * typical conv: 3x3, batch 16, 32x32x128 -> 128, 'same'. Times the forward pass alone and forward +
 * backward (tf.grads for input and filter), and how many cores the native kernels kept busy (CPU time
 * over wall time). Prints one JSON document. Run: npx tsx bench/native-conv.ts [--repeats N]
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, type BackendName } from '../core/backend';

const X_SHAPE: [number, number, number, number] = [16, 32, 32, 128];
const FILTER_SHAPE: [number, number, number, number] = [3, 3, 128, 128];
// Multiply-adds of the forward conv, x2 for FLOPs; each of the two gradients costs as much again.
const FORWARD_GFLOP =
  (2 * X_SHAPE[0] * X_SHAPE[1] * X_SHAPE[2] * FILTER_SHAPE[0] * FILTER_SHAPE[1] * 128 * 128) / 1e9;

interface Timing {
  medianMs: number;
  /** Process CPU time / wall time over the timed calls: ~1 single-threaded, up to the core count. */
  coresBusy: number;
}

function repeatsFromArgs(): number {
  const i = process.argv.indexOf('--repeats');
  const repeats = i >= 0 ? Number(process.argv[i + 1]) : 5;
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error('--repeats needs a whole number >= 1');
  return repeats;
}

/** Median of `repeats` calls after one warm-up call; `call` must return only once results are ready. */
function time(call: () => void, repeats: number): Timing {
  call();
  const times: number[] = [];
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    call();
    times.push(performance.now() - start);
  }
  const cpu = process.cpuUsage(cpuBefore);
  const wallMs = performance.now() - wallBefore;
  times.sort((a, b) => a - b);
  return {
    medianMs: round(times[Math.floor(times.length / 2)]),
    coresBusy: round((cpu.user + cpu.system) / 1000 / wallMs, 2),
  };
}

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

async function benchBackend(name: BackendName, repeats: number): Promise<Record<string, unknown>> {
  const info = await initBackend(name);
  const x = tf.randomNormal(X_SHAPE, 0, 1, 'float32', 1) as tf.Tensor4D;
  const filter = tf.randomNormal(FILTER_SHAPE, 0, 0.05, 'float32', 2) as tf.Tensor4D;
  // A random upstream gradient, as in training (a plain sum would give the same dy everywhere).
  const dy = tf.randomNormal([X_SHAPE[0], X_SHAPE[1], X_SHAPE[2], FILTER_SHAPE[3]], 0, 1, 'float32', 3);
  const conv = (xt: tf.Tensor4D, ft: tf.Tensor4D) => tf.conv2d(xt, ft, 1, 'same');
  const lossGrads = tf.grads((xt: tf.Tensor, ft: tf.Tensor) =>
    tf.sum(tf.mul(conv(xt as tf.Tensor4D, ft as tf.Tensor4D), dy)),
  );

  const forward = time(() => tf.tidy(() => void conv(x, filter).dataSync()), repeats);
  const forwardBackward = time(
    () =>
      tf.tidy(() => {
        const [dx, dFilter] = lossGrads([x, filter]);
        dx.dataSync();
        dFilter.dataSync();
      }),
    repeats,
  );
  tf.dispose([x, filter, dy]);
  return {
    backend: info,
    forward,
    forwardBackward,
    forwardBackwardGflops: round((3 * FORWARD_GFLOP) / (forwardBackward.medianMs / 1000)),
  };
}

async function main(): Promise<void> {
  const repeats = repeatsFromArgs();
  const loadBefore = os.loadavg()[0];
  const tensorflow = await benchBackend('tensorflow', repeats);
  const wasm = await benchBackend('wasm', repeats);
  const msOf = (r: Record<string, unknown>) => (r.forwardBackward as Timing).medianMs;
  console.log(
    JSON.stringify(
      {
        case: 'conv2d 3x3 same, x 16x32x32x128, filter 3x3x128x128, forward + tf.grads(x, filter)',
        forwardGflop: round(FORWARD_GFLOP, 2),
        repeats,
        cpus: os.cpus().length,
        // Other work on the machine steals cores from the multi-threaded native kernels.
        loadAverage1mBefore: round(loadBefore, 2),
        tfNumIntraopThreads: process.env.TF_NUM_INTRAOP_THREADS ?? 'default (all cores)',
        tensorflow,
        wasm,
        wasmOverTensorflowForwardBackward: round(msOf(wasm) / msOf(tensorflow), 2),
      },
      null,
      2,
    ),
  );
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
