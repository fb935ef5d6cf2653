/**
 * Writes a checkpoint fixture: the micro U-Net's layout (res blocks, attention, down- and upsampling)
 * at 4 channels on both levels, 5,023 parameters, trained 2 steps on the cpu backend so its four
 * buffers all differ (~80 KB in all). Checked in under test/fixtures/checkpoints/v<version>-micro/ by
 * the code of each format version, so later builds prove they still read it
 * (test/checkpoint-compat.test.ts).
 *
 *   npx tsx test/helpers/checkpoint-fixture.ts test/fixtures/checkpoints/v<N>-micro
 *
 * Run it only to add the fixture of a new format version, into a new folder; never over an old one.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { saveCheckpointDir } from '../../core/checkpoint/checkpoint';
import type { RunConfig } from '../../core/presets';
import { Purpose, Rng } from '../../core/rng';
import type { ImageSource } from '../../core/train/batch';
import type { TrainState } from '../../core/train/optimizer';
import { Trainer } from '../../core/train/trainer';
import { microConfig } from './micro-config';

export function fixtureConfig(): RunConfig {
  const base = microConfig({ seed: 3, batchSize: 4, microBatchSize: 4, warmupSteps: 1, emaDecay: 0.5 });
  return {
    ...base,
    model: { ...base.model, ch: 4, chMult: [1, 1], groups: 2 },
    train: { ...base.train, totalSteps: 2 },
  };
}

export function fixtureImages(): ImageSource {
  const rng = new Rng([9, Purpose.Evaluation]);
  return {
    count: 6,
    height: 8,
    width: 8,
    channels: 3,
    pixels: Uint8Array.from({ length: 6 * 192 }, () => rng.int(256)),
  };
}

/** sha256 of each buffer's bytes: what a reader of the fixture must get back exactly. */
export function stateDigests(s: TrainState): Record<'params' | 'ema' | 'adamM' | 'adamV', string> {
  const digest = (a: Float32Array) =>
    createHash('sha256')
      .update(Buffer.from(a.buffer, a.byteOffset, a.byteLength))
      .digest('hex');
  return { params: digest(s.params), ema: digest(s.ema), adamM: digest(s.adamM), adamV: digest(s.adamV) };
}

async function main(dir: string): Promise<void> {
  await tf.setBackend('cpu');
  const config = fixtureConfig();
  const trainer = new Trainer({ config, data: fixtureImages() });
  while (trainer.currentStep < config.train.totalSteps) await trainer.step();
  const state = await trainer.hostState();
  trainer.dispose();
  const manifest = await saveCheckpointDir(dir, state, config);
  console.log(
    JSON.stringify(
      { dir, step: manifest.step, paramCount: manifest.paramCount, digests: stateDigests(state) },
      null,
      2,
    ),
  );
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: npx tsx test/helpers/checkpoint-fixture.ts <output dir>');
  void main(dir);
}
