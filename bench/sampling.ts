/**
 * Sampling throughput, images/s, for DDPM-1000 (the paper's ancestral sampler) and DDIM-50 on each TF.js
 * backend that starts here and each preset asked for, printed as one JSON object.
 *
 *   npm run bench:sampling -- [--backends tensorflow,wasm] [--presets digits,cifar10] [--batch N]
 *                             [--timed-steps 50]
 *
 * Small counts: one batch per measurement (default 16 images for digits, 4 for cifar10, so the whole
 * benchmark stays within minutes on a CPU). DDIM-50 runs all of its steps through generateImages (noise,
 * model, update, read-back). DDPM-1000 is timed over its first --timed-steps steps and extrapolated to
 * 1000: every ancestral step costs the same (one model evaluation, one noise draw, one update), and a full
 * cifar10 run on a CPU backend takes hours. Weights are random (perturbed initialisation), which costs the
 * same as trained ones.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Command } from 'commander';
import os from 'node:os';
import { initBackend, type BackendName } from '../core/backend';
import { AncestralSampler, standardNormalBatch } from '../core/diffusion';
import { uniformTimesteps } from '../core/diffusion/coefficients';
import { ParamLayout } from '../core/model/params';
import { unetParamSpecs } from '../core/model/unet';
import { getPreset, presetNames } from '../core/presets';
import type { RunConfig } from '../core/presets';
import { Purpose, Rng } from '../core/rng';
import { epsModelFromWeights, generateImages, makeSampler } from '../core/sampling';
import { runCli } from '../cli/errors';
import { positiveInt } from '../cli/options';

const DEFAULT_BATCH: Record<string, number> = { digits: 16, cifar10: 4 };

const program = new Command('bench:sampling')
  .description(
    'Measure sampling images/s (DDPM-1000, DDIM-50) per backend and preset; prints one JSON object',
  )
  .option('--backends <list>', 'backends to try, comma-separated', 'tensorflow,wasm')
  .option('--presets <list>', `presets, comma-separated (${presetNames().join(', ')})`, 'digits,cifar10')
  .option(
    '--batch <n>',
    'images per measurement (default: 16 for digits, 4 for cifar10, else 8)',
    positiveInt,
  )
  .option('--timed-steps <n>', 'DDPM-1000 steps actually run (then extrapolated to all)', positiveInt, 50);

interface Options {
  backends: string;
  presets: string;
  batch?: number;
  timedSteps: number;
}

function randomWeights(config: RunConfig): Float32Array {
  const layout = new ParamLayout(unetParamSpecs(config.model));
  const rng = new Rng([1, Purpose.Init]);
  return rng.fillNormal(new Float32Array(layout.totalSize)).map((v) => 0.02 * v);
}

interface Result {
  backend: string;
  preset: string;
  params: number;
  sampler: 'ddpm1000' | 'ddim50';
  batch: number;
  /** Model evaluations per image for the whole sampler. */
  steps: number;
  /** Steps actually run and timed. */
  timedSteps: number;
  extrapolated: boolean;
  seconds: number;
  imagesPerSec: number;
}

async function ddim50(
  backend: string,
  config: RunConfig,
  weights: Float32Array,
  batch: number,
): Promise<Result> {
  const started = performance.now();
  await generateImages(config, weights, {
    count: batch,
    seed: 1,
    sampler: { kind: 'ddim', steps: 50 },
    batchSize: batch,
  });
  const seconds = (performance.now() - started) / 1000;
  return {
    backend,
    preset: config.preset,
    params: weights.length,
    sampler: 'ddim50',
    batch,
    steps: 50,
    timedSteps: 50,
    extrapolated: false,
    seconds,
    imagesPerSec: batch / seconds,
  };
}

/** The first `timed` steps of Algorithm 2, exactly as AncestralSampler.sample runs each of them. */
async function ddpm1000(
  backend: string,
  config: RunConfig,
  weights: Float32Array,
  batch: number,
  timed: number,
): Promise<Result> {
  const sampler = makeSampler(config, { kind: 'ancestral' }) as AncestralSampler;
  const T = sampler.numSteps;
  const { imageSize: s, inChannels: c } = config.model;
  const shape: [number, number, number, number] = [batch, s, s, c];
  const { model, dispose } = epsModelFromWeights(config, weights);
  const key = { seed: 1, purpose: Purpose.Sampling, firstSampleIndex: 0 };
  let x = standardNormalBatch(shape, { ...key, step: 0 });
  const started = performance.now();
  const steps = Math.min(timed, T);
  for (let t = T - 1; t >= T - steps; t--) {
    const eps = model(x, uniformTimesteps(t, batch));
    const noise = standardNormalBatch(shape, { ...key, step: t + 1 });
    const next = sampler.step(x, eps, t, noise);
    tf.dispose([x, eps, noise]);
    x = next;
  }
  await x.data(); // asynchronous backends finish the queued work here
  const seconds = ((performance.now() - started) / 1000) * (T / steps);
  x.dispose();
  dispose();
  return {
    backend,
    preset: config.preset,
    params: weights.length,
    sampler: 'ddpm1000',
    batch,
    steps: T,
    timedSteps: steps,
    extrapolated: steps < T,
    seconds,
    imagesPerSec: batch / seconds,
  };
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const results: Result[] = [];
  const skipped: { backend: string; reason: string }[] = [];
  for (const backend of o.backends.split(',').map((b) => b.trim()) as BackendName[]) {
    try {
      await initBackend(backend, log);
    } catch (err) {
      skipped.push({ backend, reason: err instanceof Error ? err.message : String(err) });
      continue;
    }
    for (const name of o.presets.split(',').map((p) => p.trim())) {
      const config = getPreset(name);
      const batch = o.batch ?? DEFAULT_BATCH[name] ?? 8;
      const weights = randomWeights(config);
      // One untimed model evaluation first: kernel set-up is not sampling throughput.
      const { model, dispose } = epsModelFromWeights(config, weights);
      const warm = model(
        tf.zeros([batch, config.model.imageSize, config.model.imageSize, config.model.inChannels]),
        uniformTimesteps(0, batch),
      );
      await warm.data();
      tf.dispose(warm);
      dispose();
      for (const r of [
        await ddim50(backend, config, weights, batch),
        await ddpm1000(backend, config, weights, batch, o.timedSteps),
      ]) {
        log(`${backend} ${name} ${r.sampler} batch ${batch}: ${r.imagesPerSec.toPrecision(3)} img/s`);
        results.push(r);
      }
    }
  }
  process.stdout.write(
    `${JSON.stringify(
      {
        benchmark: 'sampling',
        note: 'one batch per measurement (small counts); DDPM-1000 timed over timedSteps steps and extrapolated; random weights',
        machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg: os.loadavg() },
        results,
        skipped,
      },
      null,
      2,
    )}\n`,
  );
});
