/**
 * Training and sampling throughput of the DDPM U-Net on the chosen TF.js backend, printed as JSON.
 *
 *   npm run bench -- --preset cifar10 [--backend auto] [--batch 128] [--micro-batch 16] [--steps 2]
 *                    [--optimizer device|host] [--device-layout flat|per-tensor] [--no-kernel-count]
 *
 * Training images/s counts whole optimizer steps (forward + backward over the global batch via
 * accumulation, clipping, Adam and EMA), with the split of a step into its phases (each phase waits for
 * its kernels, so the split is honest on webgpu too). Kernels per step come from tf.profile over one
 * extra, untimed step. Sampling images/s is one U-Net forward at --sample-batch images. The machine's
 * load average is part of the result: on a shared CPU the figures mean little without it. Uses synthetic
 * pixels so it needs no dataset.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Command, Option } from 'commander';
import { loadavg } from 'node:os';
import { initBackend } from '../core/backend';
import { ParamLayout } from '../core/model/params';
import { unetParamSpecs } from '../core/model/unet';
import { presetNames } from '../core/presets';
import { epsModelFromWeights } from '../core/sampling';
import type { DeviceLayout } from '../core/train/device-state';
import { defaultMicroBatchSize } from '../core/train/micro-batch';
import { OptimizerPlacement, StepPhases, Trainer, defaultOptimizerPlacement } from '../core/train/trainer';
import { runCli } from '../cli/errors';
import { positiveInt, resolveRunConfig } from '../cli/options';
import { describeDevice, nvidiaGpus } from './device-info';
import { profileKernels } from './kernel-profile';
import { syntheticImages } from './synthetic-images';

const program = new Command('bench')
  .description('Measure DDPM training and sampling throughput; prints one JSON object')
  .addOption(new Option('--preset <name>', 'model preset').choices(presetNames()).default('tiny'))
  .addOption(
    new Option('--backend <name>', 'TF.js backend')
      .choices(['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'])
      .default('auto'),
  )
  .option(
    '--batch <n>',
    'global batch per optimizer step (default: the preset, 128 for cifar10)',
    positiveInt,
  )
  .option('--micro-batch <n>', 'images per forward/backward pass', positiveInt)
  .option('--steps <n>', 'timed optimizer steps', positiveInt, 2)
  .option('--sample-batch <n>', 'batch of the timed sampling forward pass', positiveInt, 128)
  .addOption(
    new Option(
      '--optimizer <where>',
      'optimizer state on the device or in JS (default: per backend)',
    ).choices(['device', 'host']),
  )
  .addOption(
    new Option('--device-layout <how>', 'device state as one flat tensor per quantity or one per parameter')
      .choices(['flat', 'per-tensor'])
      .default('flat'),
  )
  .option('--no-kernel-count', 'skip the extra profiled step that counts kernels');

interface Options {
  preset: string;
  backend: 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
  batch?: number;
  microBatch?: number;
  steps: number;
  sampleBatch: number;
  optimizer?: OptimizerPlacement;
  deviceLayout: DeviceLayout;
  kernelCount: boolean;
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

/** Bytes the backend holds on a GPU, where it says (webgpu); null elsewhere. */
function gpuBytes(): number | null {
  const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesInGPUAllocated?: number };
  return m.numBytesInGPUAllocated ?? m.numBytesInGPU ?? null;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const loadBefore = loadavg();
  const backend = await initBackend(o.backend, log);
  const config = resolveRunConfig(o.preset, { batch: o.batch, microBatch: o.microBatch });
  const microBatch = Math.min(
    o.microBatch ?? defaultMicroBatchSize(backend.name, config),
    config.train.batchSize,
  );
  const optimizer = o.optimizer ?? defaultOptimizerPlacement(backend.name);
  const { imageSize: size, inChannels: channels } = config.model;
  const data = syntheticImages(Math.max(config.train.batchSize, 256), size, channels);
  const params = new ParamLayout(unetParamSpecs(config.model)).totalSize;
  const trainerOptions = { data, optimizer, deviceLayout: o.deviceLayout, syncPhases: true };

  const trainer = new Trainer({ config, microBatchSize: microBatch, ...trainerOptions });
  log(`warm-up: one micro-batch of ${microBatch} (kernel set-up, allocation)`);
  const warmTrainer = new Trainer({
    config: { ...config, train: { ...config.train, batchSize: microBatch } },
    ...trainerOptions,
  });
  await warmTrainer.step();
  warmTrainer.dispose();

  const stepSeconds: number[] = [];
  // Tensors left behind by a step: counted from the end of the first (which creates the state).
  const leaked: number[] = [];
  const phases: StepPhases = { forwardBackward: 0, gradientReadBack: 0, allReduce: 0, update: 0 };
  let peakGpuBytes = gpuBytes();
  let tensorsBefore: number | null = null;
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < o.steps; i++) {
    const t0 = performance.now();
    const r = await trainer.step();
    stepSeconds.push((performance.now() - t0) / 1000);
    for (const k of Object.keys(phases) as (keyof StepPhases)[]) phases[k] += r.phases[k] / o.steps;
    const tensorsAfter = tf.memory().numTensors;
    if (tensorsBefore !== null) leaked.push(tensorsAfter - tensorsBefore);
    tensorsBefore = tensorsAfter;
    const bytes = gpuBytes();
    if (bytes !== null) peakGpuBytes = Math.max(peakGpuBytes ?? 0, bytes);
    log(`step ${r.step}: ${stepSeconds[i].toFixed(2)} s, loss ${r.loss.toFixed(4)}`);
  }
  const cpu = process.cpuUsage(cpuBefore);
  const trainSeconds = stepSeconds.reduce((a, b) => a + b, 0);

  let kernels = null;
  if (o.kernelCount) {
    log('counting kernels over one more step (tf.profile)');
    const before = tf.memory().numTensors;
    kernels = await profileKernels(() => trainer.step());
    leaked.push(tf.memory().numTensors - before);
  }
  const ema = (await trainer.hostState()).ema.slice();
  trainer.dispose();

  // Sampling cost is one U-Net evaluation per denoising step; time one at the requested batch.
  const { model, dispose } = epsModelFromWeights(config, ema);
  const x = tf.randomNormal([o.sampleBatch, size, size, channels], 0, 1, 'float32', 3) as tf.Tensor4D;
  const t = Int32Array.from({ length: o.sampleBatch }, (_, i) => (i * 7) % config.diffusion.timesteps);
  const warm = model(tf.slice(x, 0, 1), t.subarray(0, 1));
  await warm.data();
  warm.dispose();
  const s0 = performance.now();
  const eps = model(x, t);
  await eps.data();
  const sampleSeconds = (performance.now() - s0) / 1000;
  const bytes = gpuBytes();
  if (bytes !== null) peakGpuBytes = Math.max(peakGpuBytes ?? 0, bytes);
  tf.dispose([eps, x]);
  dispose();

  const result = {
    preset: config.preset,
    backend: backend.name,
    backendDetail: backend.detail,
    device: describeDevice(backend),
    params,
    globalBatch: config.train.batchSize,
    microBatch,
    optimizer,
    deviceLayout: optimizer === 'device' ? o.deviceLayout : null,
    timedSteps: o.steps,
    secondsPerStep: round(trainSeconds / o.steps),
    trainImagesPerSec: round((config.train.batchSize * o.steps) / trainSeconds),
    /** Process CPU time (all threads) per step: less sensitive than wall time to a busy machine. */
    cpuSecondsPerStep: round((cpu.user + cpu.system) / 1e6 / o.steps),
    stepPhasesSeconds: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, round(v)])),
    kernelsPerStep: kernels?.kernels ?? null,
    topKernels: kernels?.top ?? null,
    sampleBatch: o.sampleBatch,
    sampleForwardSeconds: round(sampleSeconds),
    sampleImagesPerSec: round(o.sampleBatch / sampleSeconds),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    peakBackendGpuMiB: peakGpuBytes === null ? null : Math.round(peakGpuBytes / 2 ** 20),
    nvidiaSmi: nvidiaGpus(),
    tensorsLeakedPerStep: leaked.length > 0 ? Math.max(...leaked) : null,
    loadAverage: { before: loadBefore.map((l) => round(l, 2)), after: loadavg().map((l) => round(l, 2)) },
    node: process.version,
    date: new Date().toISOString(),
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
});
