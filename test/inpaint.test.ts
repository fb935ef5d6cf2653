/**
 * RePaint inpainting: its jump schedule against the authors' reference, the step's algebra, PNG inputs
 * with their one-line errors, kept pixels kept exactly, and a model trained here on images that are
 * constant per image filling a masked square with the image's own level (a check that "plausible" can be
 * measured by: an untrained model or unconditional samples miss it by far).
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../core/backend';
import { encodePngGrid } from '../core/data';
import { NoiseSchedule, RePaintSampler, repaintSchedule } from '../core/diffusion';
import { InvalidInputError } from '../core/errors';
import { decodeKeepMask, decodeModelImage, inpaintImages } from '../core/inpaint';
import type { RunConfig } from '../core/presets';
import { Purpose, Rng } from '../core/rng';
import { generateImages } from '../core/sampling';
import { Trainer } from '../core/train/trainer';
import { microConfig } from './helpers/micro-config';

jest.setTimeout(600_000);

describe('RePaint schedule', () => {
  // Expected lists printed by the authors' get_schedule_jump_paper (andreas128/RePaint,
  // guided_diffusion/scheduler.py) for these arguments.
  test('matches the reference on small cases', () => {
    expect(Array.from(repaintSchedule(5, 2, 2))).toEqual([4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, -1]);
    expect(Array.from(repaintSchedule(7, 3, 3))).toEqual([
      6, 5, 4, 3, 4, 5, 6, 5, 4, 3, 4, 5, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, -1,
    ]);
  });

  test("the paper's setting (250 steps, jumps of 10, 10 times) has the reference's 4571 positions, 2410 of them reverse steps", () => {
    const ts = repaintSchedule(250, 10, 10);
    expect(ts.length).toBe(4571);
    let down = 0;
    for (let k = 1; k < ts.length; k++) {
      expect(Math.abs(ts[k] - ts[k - 1])).toBe(1);
      if (ts[k] < ts[k - 1]) down++;
    }
    expect(down).toBe(2410);
    expect(ts[0]).toBe(249);
    expect(ts[ts.length - 1]).toBe(-1);
  });

  test("defaults are RePaint's, scaled to the run's timesteps", () => {
    const paper = new RePaintSampler(NoiseSchedule.linear(1000));
    expect([paper.steps, paper.jumpLength, paper.resamplings, paper.numModelEvaluations]).toEqual([
      250, 10, 10, 2410,
    ]);
    const short = new RePaintSampler(NoiseSchedule.linear(100));
    expect([short.steps, short.jumpLength, short.resamplings]).toEqual([25, 1, 10]);
    expect(() => new RePaintSampler(NoiseSchedule.linear(100), { steps: 101 })).toThrow(RangeError);
    expect(() => repaintSchedule(10, 0, 2)).toThrow('RePaint jump length must be a whole number >= 1, got 0');
  });
});

describe('RePaint step (cpu)', () => {
  const schedule = NoiseSchedule.linear(100, 1e-3, 0.2);
  const sampler = new RePaintSampler(schedule, { steps: 20, jumpLength: 2, resamplings: 3 });
  const shape: [number, number, number, number] = [2, 4, 4, 1];
  const values = (seed: number) => new Rng([seed]).fillNormal(new Float32Array(32));
  const maskValues = Float32Array.from({ length: 32 }, (_, i) => (i % 3 === 0 ? 0 : 1));

  beforeAll(async () => {
    await initBackend('cpu');
  });

  test('known pixels take the forward-noised data, q(x_{t-1} | x_0), at every step but the last, where they are x_0', async () => {
    const [xt, eps, x0, noiseK, noiseS] = [1, 2, 3, 4, 5].map((s) => tf.tensor4d(values(s), shape));
    const mask = tf.tensor4d(maskValues, shape);
    const i = 7;
    const abarPrev = schedule.alphasCumprod[sampler.timestepAt(i - 1)];
    const out = await sampler.step(xt, eps, i, x0, mask, noiseK, noiseS).data();
    const x0v = values(3);
    const nk = values(4);
    for (let p = 0; p < 32; p++) {
      if (maskValues[p] === 1) {
        expect(out[p]).toBeCloseTo(Math.sqrt(abarPrev) * x0v[p] + Math.sqrt(1 - abarPrev) * nk[p], 5);
      }
    }
    const last = await sampler.step(xt, eps, 0, x0, mask, null, null).data();
    for (let p = 0; p < 32; p++) if (maskValues[p] === 1) expect(last[p]).toBe(x0v[p]);
    tf.dispose([xt, eps, x0, noiseK, noiseS, mask]);
  });

  test('a jump re-noises with q(x_{t+1} | x_t): the product of (1 - beta) over the skipped timesteps', async () => {
    const x = tf.tensor4d(values(6), shape);
    const z = tf.tensor4d(values(7), shape);
    const i = 4;
    let keep = 1;
    for (let t = sampler.timestepAt(i) + 1; t <= sampler.timestepAt(i + 1); t++)
      keep *= 1 - schedule.betas[t];
    const out = await sampler.undo(x, i, z).data();
    const xv = values(6);
    const zv = values(7);
    for (let p = 0; p < 32; p++)
      expect(out[p]).toBeCloseTo(Math.sqrt(keep) * xv[p] + Math.sqrt(1 - keep) * zv[p], 5);
    tf.dispose([x, z]);
  });
});

describe('PNG inputs', () => {
  const shape = { height: 4, width: 4, channels: 1 };
  const model = 'the model of run r (preset digits)';
  const gray = encodePngGrid(
    Uint8Array.from({ length: 16 }, (_, i) => i * 16),
    1,
    4,
    4,
    1,
    { padding: 0 },
  );

  test('a grayscale PNG decodes to its bytes; a mask keeps where white', () => {
    expect(Array.from(decodeModelImage(gray, shape, 'img.png', model))).toEqual(
      Array.from({ length: 16 }, (_, i) => i * 16),
    );
    expect(Array.from(decodeKeepMask(gray, shape, 'mask.png', model))).toEqual(
      Array.from({ length: 16 }, (_, i) => (i * 16 >= 128 ? 1 : 0)),
    );
    // An RGB PNG that is gray in fact feeds a grayscale model; a grayscale one fills an RGB model.
    const rgbGray = encodePngGrid(
      Uint8Array.from({ length: 48 }, (_, i) => Math.floor(i / 3)),
      1,
      4,
      4,
      3,
      { padding: 0 },
    );
    expect(Array.from(decodeModelImage(rgbGray, shape, 'img.png', model))).toEqual(
      Array.from({ length: 16 }, (_, i) => i),
    );
    expect(decodeModelImage(gray, { ...shape, channels: 3 }, 'img.png', model).slice(0, 6)).toEqual(
      Uint8Array.from([0, 0, 0, 16, 16, 16]),
    );
  });

  test('wrong size, colour for a grayscale model and a broken file are one-line input errors', () => {
    const big = encodePngGrid(new Uint8Array(25), 1, 5, 5, 1, { padding: 0 });
    expect(() => decodeModelImage(big, shape, '--image big.png', model)).toThrow(
      new InvalidInputError('--image big.png is 5x5 but the model of run r (preset digits) takes 4x4 images'),
    );
    expect(() => decodeKeepMask(big, shape, '--mask m.png', model)).toThrow('--mask m.png is 5x5 but');
    const colour = encodePngGrid(
      Uint8Array.from({ length: 48 }, (_, i) => i),
      1,
      4,
      4,
      3,
      { padding: 0 },
    );
    expect(() => decodeModelImage(colour, shape, '--image c.png', model)).toThrow(
      '--image c.png has colour but the model of run r (preset digits) is grayscale; convert it to gray first',
    );
    expect(() => decodeModelImage(Buffer.from('not a png'), shape, '--image x.png', model)).toThrow(
      /^--image x\.png: not a readable PNG \(.+\)$/,
    );
  });
});

/** 8x8 grayscale images, each one uniform gray: a structure whose right fill is known. */
function constantImages(levels: number[]): Uint8Array {
  const out = new Uint8Array(levels.length * 64);
  levels.forEach((v, i) => out.fill(v, i * 64, (i + 1) * 64));
  return out;
}

/** Keep everything but the central 4x4 square. */
function squareHoleMasks(count: number): Uint8Array {
  const keep = new Uint8Array(count * 64).fill(1);
  for (let i = 0; i < count; i++)
    for (let y = 2; y < 6; y++) for (let x = 2; x < 6; x++) keep[i * 64 + y * 8 + x] = 0;
  return keep;
}

function holeMeans(pixels: Uint8Array, count: number): number[] {
  return Array.from({ length: count }, (_, i) => {
    let sum = 0;
    for (let y = 2; y < 6; y++) for (let x = 2; x < 6; x++) sum += pixels[i * 64 + y * 8 + x];
    return sum / 16;
  });
}

describe('inpainting with a trained toy model (tensorflow)', () => {
  const base = microConfig({
    seed: 3,
    batchSize: 16,
    microBatchSize: 16,
    warmupSteps: 20,
    learningRate: 2e-3,
    emaDecay: 0.95,
    randomFlip: false,
    totalSteps: 200,
  });
  const config: RunConfig = { ...base, model: { ...base.model, inChannels: 1, dropout: 0 } };
  const levels = Array.from({ length: 12 }, (_, i) => 40 + Math.round((i * 175) / 11));
  const images = constantImages(levels);
  const keep = squareHoleMasks(levels.length);
  let untrained: Float32Array;
  let trained: Float32Array;

  beforeAll(async () => {
    await initBackend('tensorflow');
    const rng = new Rng([9, Purpose.Evaluation]);
    const train = constantImages(Array.from({ length: 512 }, () => 32 + rng.int(193)));
    const trainer = new Trainer({
      config,
      data: { count: 512, height: 8, width: 8, channels: 1, pixels: train },
    });
    untrained = Float32Array.from((await trainer.hostState()).ema);
    while (trainer.currentStep < config.train.totalSteps) await trainer.step();
    trained = (await trainer.hostState()).ema;
    trainer.dispose();
  });

  test('kept pixels come out exactly as given, and the fill has the image level, far closer than chance', async () => {
    const before = tf.memory().numTensors;
    const steps: number[] = [];
    const { pixels, sampler } = await inpaintImages(config, trained, {
      pixels: images,
      keep,
      count: levels.length,
      seed: 1,
      batchSize: 6,
      onProgress: (done) => void steps.push(done),
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(steps.at(-1)).toBe(2 * (sampler.positions.length - 1));
    for (let p = 0; p < keep.length; p++) if (keep[p] === 1) expect(pixels[p]).toBe(images[p]);

    const errors = holeMeans(pixels, levels.length).map((m, i) => Math.abs(m - levels[i]));
    // Unconditional samples of the same model: what the hole would hold without the known pixels.
    const free = await generateImages(config, trained, {
      count: levels.length,
      seed: 5,
      sampler: { kind: 'ddim', steps: 25 },
    });
    const freeErrors = holeMeans(free, levels.length).map((m, i) => Math.abs(m - levels[i]));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(Math.max(...errors)).toBeLessThan(8);
    expect(mean(freeErrors)).toBeGreaterThan(20);
    expect(mean(errors)).toBeLessThan(0.15 * mean(freeErrors));
  });

  test('an untrained model does not fill plausibly: the training is what the check measures', async () => {
    const { pixels } = await inpaintImages(config, untrained, {
      pixels: images,
      keep,
      count: levels.length,
      seed: 1,
    });
    for (let p = 0; p < keep.length; p++) if (keep[p] === 1) expect(pixels[p]).toBe(images[p]);
    const errors = holeMeans(pixels, levels.length).map((m, i) => Math.abs(m - levels[i]));
    expect(errors.reduce((a, b) => a + b, 0) / errors.length).toBeGreaterThan(20);
  });

  test('the same seed gives the same fill; another seed another fill', async () => {
    const a = await inpaintImages(config, trained, {
      pixels: images.subarray(0, 128),
      keep: keep.subarray(0, 128),
      count: 2,
      seed: 4,
      batchSize: 2,
      repaint: { resamplings: 2 },
    });
    const b = await inpaintImages(config, trained, {
      pixels: images.subarray(0, 128),
      keep: keep.subarray(0, 128),
      count: 2,
      seed: 4,
      batchSize: 2,
      repaint: { resamplings: 2 },
    });
    const c = await inpaintImages(config, trained, {
      pixels: images.subarray(0, 128),
      keep: keep.subarray(0, 128),
      count: 2,
      seed: 5,
      batchSize: 2,
      repaint: { resamplings: 2 },
    });
    expect(Buffer.from(a.pixels).equals(Buffer.from(b.pixels))).toBe(true);
    expect(Buffer.from(a.pixels).equals(Buffer.from(c.pixels))).toBe(false);
  });

  test('a mask that keeps everything is refused', async () => {
    await expect(
      inpaintImages(config, trained, {
        pixels: images.subarray(0, 64),
        keep: new Uint8Array(64).fill(1),
        count: 1,
        seed: 1,
      }),
    ).rejects.toThrow(new InvalidInputError('the mask keeps every pixel: nothing to fill'));
  });
});
