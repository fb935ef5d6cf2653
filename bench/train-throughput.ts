/**
 * Training and sampling throughput of the DDPM U-Net on the chosen TF.js backend, printed as JSON.
 *
 *   npm run bench -- --preset cifar10 [--backend auto] [--batch 128] [--micro-batch 16] [--steps 1]
 *
 * Training images/s counts whole optimizer steps (forward + backward over the global batch via
 * accumulation, gradient read-back, clipping, Adam and EMA). Sampling images/s is one U-Net forward at
 * --sample-batch images. Uses synthetic pixels so it needs no dataset.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Command, Option } from 'commander';
import { availableParallelism } from 'node:os';
import { initBackend } from '../core/backend';
import { ParamLayout } from '../core/model/params';
import { unetParamSpecs } from '../core/model/unet';
import { presetNames } from '../core/presets';
import { epsModelFromWeights } from '../core/sampling';
import { defaultMicroBatchSize } from '../core/train/micro-batch';
import { Trainer } from '../core/train/trainer';
import { runCli } from '../cli/errors';
import { syntheticImages } from './synthetic-images';
import { positiveInt, resolveRunConfig } from '../cli/options';

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
  .option('--sample-batch <n>', 'batch of the timed sampling forward pass', positiveInt, 128);

interface Options {
  preset: string;
  backend: 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
  batch?: number;
  microBatch?: number;
  steps: number;
  sampleBatch: number;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const backend = await initBackend(o.backend, log);
  const config = resolveRunConfig(o.preset, { batch: o.batch, microBatch: o.microBatch });
  const microBatch = o.microBatch ?? defaultMicroBatchSize(backend.name, config);
  const { imageSize: size, inChannels: channels } = config.model;
  const data = syntheticImages(Math.max(config.train.batchSize, 256), size, channels);
  const params = new ParamLayout(unetParamSpecs(config.model)).totalSize;

  const trainer = new Trainer({ config, data, microBatchSize: microBatch });
  log(`warm-up: one micro-batch of ${microBatch} (kernel set-up, allocation)`);
  const warmTrainer = new Trainer({
    config: { ...config, train: { ...config.train, batchSize: microBatch } },
    data,
  });
  await warmTrainer.step();
  warmTrainer.dispose();

  const stepSeconds: number[] = [];
  const leaked: number[] = [];
  let tensorsBefore = tf.memory().numTensors;
  for (let i = 0; i < o.steps; i++) {
    const t0 = performance.now();
    const r = await trainer.step();
    stepSeconds.push((performance.now() - t0) / 1000);
    const tensorsAfter = tf.memory().numTensors;
    leaked.push(tensorsAfter - tensorsBefore);
    tensorsBefore = tensorsAfter;
    log(`step ${r.step}: ${stepSeconds[i].toFixed(2)} s, loss ${r.loss.toFixed(4)}`);
  }
  trainer.dispose();
  const trainSeconds = stepSeconds.reduce((a, b) => a + b, 0);

  // Sampling cost is one U-Net evaluation per denoising step; time one at the requested batch.
  const { model, dispose } = epsModelFromWeights(config, (await trainer.hostState()).ema);
  const x = tf.randomNormal([o.sampleBatch, size, size, channels], 0, 1, 'float32', 3) as tf.Tensor4D;
  const t = Int32Array.from({ length: o.sampleBatch }, (_, i) => (i * 7) % config.diffusion.timesteps);
  const warm = model(tf.slice(x, 0, 1), t.subarray(0, 1));
  await warm.data();
  warm.dispose();
  const s0 = performance.now();
  const eps = model(x, t);
  await eps.data();
  const sampleSeconds = (performance.now() - s0) / 1000;
  tf.dispose([eps, x]);
  dispose();

  const result = {
    preset: config.preset,
    backend: backend.name,
    backendDetail: backend.detail,
    params,
    globalBatch: config.train.batchSize,
    microBatch,
    timedSteps: o.steps,
    secondsPerStep: Number((trainSeconds / o.steps).toFixed(3)),
    trainImagesPerSec: Number(((config.train.batchSize * o.steps) / trainSeconds).toFixed(3)),
    sampleBatch: o.sampleBatch,
    sampleForwardSeconds: Number(sampleSeconds.toFixed(3)),
    sampleImagesPerSec: Number((o.sampleBatch / sampleSeconds).toFixed(3)),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    tensorsLeakedPerStep: Math.max(...leaked),
    cpuCores: availableParallelism(),
    node: process.version,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
});
