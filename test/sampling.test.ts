/**
 * Sampling from weights: the sampler objects behind each user-facing choice, determinism of generated
 * images under batching and chunking on every backend that starts here, and sample sets in a real
 * local-directory store (layout, reuse, read-back).
 */
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { initBackend, type BackendName } from '../core/backend';
import { AncestralSampler, DdimSampler } from '../core/diffusion';
import { InvalidInputError } from '../core/errors';
import { Purpose, Rng } from '../core/rng';
import {
  generateImages,
  makeSampler,
  planChunks,
  readSampleSet,
  resolveSamplerChoice,
  runSampleChunk,
  sampleSetKey,
  sampleSetLocally,
  samplerLabel,
  type SampleSetSpec,
} from '../core/sampling';
import { isSampleGridKey, runKeys, sampleSetKeys } from '../core/store-layout';
import { checkDataMatchesModel } from '../core/train/trainer';
import { ParamLayout } from '../core/model/params';
import { unetParamSpecs } from '../core/model/unet';
import { openStore } from '../store';
import { microConfig } from './helpers/micro-config';

jest.setTimeout(300_000);

const config = microConfig({ seed: 21, batchSize: 4, microBatchSize: 4 });
const T = config.diffusion.timesteps;

/** Initial weights with the zero-initialised output layers perturbed, so the model's output depends on x. */
function perturbedWeights(): Float32Array {
  const rng = new Rng([1, Purpose.Evaluation]);
  const data = {
    count: 4,
    height: 8,
    width: 8,
    channels: 3,
    pixels: Uint8Array.from({ length: 4 * 8 * 8 * 3 }, () => rng.int(256)),
  };
  // The trainer's initial parameters, as a checkpoint of step 0 would hold them.
  checkDataMatchesModel(config, data);
  const initial = new ParamLayout(unetParamSpecs(config.model)).initialize(config.train.seed);
  return Float32Array.from(initial, (v) => v + 0.05 * rng.normal());
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

let weights: Float32Array;
beforeAll(async () => {
  await initBackend('cpu');
  weights = perturbedWeights();
});

describe('sampler choice', () => {
  test("'ancestral' (ddpm) is Algorithm 2 over all T steps with x0 clipping on by default", () => {
    const s = makeSampler(config, { kind: 'ancestral' });
    expect(s).toBeInstanceOf(AncestralSampler);
    expect(s.numSteps).toBe(T);
    expect((s as AncestralSampler).clipDenoised).toBe(true);
    expect((s as AncestralSampler).variance).toBe(config.diffusion.variance);
    expect(resolveSamplerChoice(config, { kind: 'ancestral' })).toEqual({
      kind: 'ancestral',
      steps: T,
      eta: 1,
      clip: true,
    });
  });

  test("'ddim' takes any step count, defaults to 50 steps, eta 0, clipping on; --no-clip turns it off", () => {
    const d = makeSampler(config, { kind: 'ddim', steps: 7 }) as DdimSampler;
    expect(d).toBeInstanceOf(DdimSampler);
    expect(d.numSteps).toBe(7);
    expect(d.eta).toBe(0);
    expect(d.clipDenoised).toBe(true);
    expect(resolveSamplerChoice(config, { kind: 'ddim' })).toEqual({
      kind: 'ddim',
      steps: 50,
      eta: 0,
      clip: true,
    });
    expect((makeSampler(config, { kind: 'ddim', clip: false }) as DdimSampler).clipDenoised).toBe(false);
  });

  test('impossible choices are input errors that say what is allowed', () => {
    expect(() => resolveSamplerChoice(config, { kind: 'ancestral', steps: 50 })).toThrow(
      new InvalidInputError(
        `ddpm (ancestral) sampling takes all ${T} timesteps of this run; use --sampler ddim for 50 steps`,
      ),
    );
    expect(() => resolveSamplerChoice(config, { kind: 'ddim', steps: T + 1 })).toThrow(
      `DDIM steps must be a whole number from 1 to ${T} (this run's timesteps), got ${T + 1}`,
    );
    expect(() => resolveSamplerChoice(config, { kind: 'ddim', eta: 2 })).toThrow(InvalidInputError);
  });

  test('labels name the method and step count, and any departure from the defaults', () => {
    expect(samplerLabel(resolveSamplerChoice(config, { kind: 'ancestral' }))).toBe(`ddpm${T}`);
    expect(samplerLabel(resolveSamplerChoice(config, { kind: 'ddim', steps: 20 }))).toBe('ddim20');
    expect(
      samplerLabel(resolveSamplerChoice(config, { kind: 'ddim', steps: 20, eta: 0.5, clip: false })),
    ).toBe('ddim20-eta0.5-noclip');
  });
});

describe('chunk plan', () => {
  test('chunks are whole batches that tile the count in order', () => {
    expect(planChunks(10, 4)).toEqual([
      { first: 0, count: 4 },
      { first: 4, count: 4 },
      { first: 8, count: 2 },
    ]);
    expect(planChunks(10, 2, 6)).toEqual([
      { first: 0, count: 6 },
      { first: 6, count: 4 },
    ]);
    // Beyond 64 batches, chunks grow by whole batches instead of multiplying.
    const big = planChunks(50_000, 128);
    expect(big.length).toBeLessThanOrEqual(64);
    expect(big.every((c) => c.first % 128 === 0)).toBe(true);
    expect(big.reduce((n, c) => n + c.count, 0)).toBe(50_000);
    expect(() => planChunks(10, 4, 6)).toThrow('chunk size must be a whole multiple of the batch (4), got 6');
  });
});

describe.each<BackendName>(['cpu', 'wasm', 'tensorflow'])('determinism on %s', (backend) => {
  const ddim = { kind: 'ddim', steps: 8 } as const;
  let whole: Uint8Array;
  beforeAll(async () => {
    await initBackend(backend);
    whole = await generateImages(config, weights, { count: 6, seed: 3, sampler: ddim, batchSize: 2 });
  });

  test('images split into chunks of whole batches equal the images made in one go, bit for bit', async () => {
    const before = tf.memory().numTensors;
    const parts: Uint8Array[] = [];
    for (const chunk of planChunks(6, 2, 2)) {
      parts.push(await generateImages(config, weights, { ...chunk, seed: 3, sampler: ddim, batchSize: 2 }));
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(sameBytes(Buffer.concat(parts), whole)).toBe(true);
    // And the images are images of something: not constant, not all clipped to one end.
    expect(new Set(whole).size).toBeGreaterThan(50);
  });

  test('a different seed gives different images; the same seed the same', async () => {
    const again = await generateImages(config, weights, { count: 2, seed: 3, sampler: ddim, batchSize: 2 });
    const other = await generateImages(config, weights, { count: 2, seed: 4, sampler: ddim, batchSize: 2 });
    expect(sameBytes(again, whole.subarray(0, again.length))).toBe(true);
    expect(sameBytes(other, again)).toBe(false);
  });

  if (backend !== 'tensorflow') {
    // Their kernels compute each image the same whatever its batch mates (tested here, not assumed).
    test('the batch size does not change any image, bit for bit', async () => {
      for (const batchSize of [1, 4, 6]) {
        const other = await generateImages(config, weights, { count: 6, seed: 3, sampler: ddim, batchSize });
        expect(sameBytes(other, whole)).toBe(true);
      }
    });
  } else {
    // Native TensorFlow's convolutions round differently for different batch shapes (about 1e-8 here):
    // the batch is part of what defines a sample set there, and other batch sizes agree to rounding.
    test('another batch size gives the same images up to float rounding', async () => {
      const other = await generateImages(config, weights, { count: 6, seed: 3, sampler: ddim, batchSize: 3 });
      let maxDiff = 0;
      let differing = 0;
      for (let i = 0; i < whole.length; i++) {
        const d = Math.abs(whole[i] - other[i]);
        maxDiff = Math.max(maxDiff, d);
        if (d > 0) differing++;
      }
      expect(maxDiff).toBeLessThanOrEqual(1);
      expect(differing / whole.length).toBeLessThan(0.01);
    });
  }
});

describe('sample sets in a store', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ddpm-sampleset-'));
    await initBackend('wasm');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const spec: SampleSetSpec = {
    runId: 'run-a',
    step: 40,
    sampler: resolveSamplerChoice(config, { kind: 'ddim', steps: 5 }),
    seed: 9,
    count: 5,
    batch: 2,
  };

  test('a set written locally has its grid, one PNG per image, raw chunks and a manifest, all agreeing', async () => {
    const store = openStore(dir);
    const progress: number[] = [];
    const manifest = await sampleSetLocally(store, config, weights, spec, {
      images: true,
      backend: 'wasm',
      onProgress: (p) => void progress.push(p.imagesEquivalent),
    });
    const setKey = sampleSetKey(spec);
    expect(setKey).toBe('run-a/samples/000000040/ddim5-seed9-n5');
    expect(manifest.chunks.map((c) => [c.first, c.count])).toEqual([
      [0, 2],
      [2, 2],
      [4, 1],
    ]);
    expect(manifest).toMatchObject({
      count: 5,
      batch: 2,
      seed: 9,
      step: 40,
      height: 8,
      width: 8,
      channels: 3,
    });
    // Progress rises to the count, never backwards.
    expect(progress.at(-1)).toBe(5);
    expect(progress.every((v, i) => i === 0 || v >= progress[i - 1])).toBe(true);

    const reference = await generateImages(config, weights, {
      count: 5,
      seed: 9,
      sampler: spec.sampler,
      batchSize: 2,
    });
    const { pixels } = await readSampleSet(store, setKey);
    expect(sameBytes(pixels, reference)).toBe(true);
    for (const i of [0, 4]) {
      const png = PNG.sync.read(Buffer.from(await store.get(sampleSetKeys.image(setKey, i))));
      const rgb = Uint8Array.from({ length: 8 * 8 * 3 }, (_, k) => png.data[Math.floor(k / 3) * 4 + (k % 3)]);
      expect(sameBytes(rgb, reference.subarray(i * 192, (i + 1) * 192))).toBe(true);
    }
    const grid = PNG.sync.read(Buffer.from(await store.get(manifest.grid)));
    expect([grid.width, grid.height]).toEqual([3 * 10 + 2, 2 * 10 + 2]);
    // Sets never pass for the run's periodic grids.
    expect(isSampleGridKey('run-a', runKeys.sampleGrid('run-a', 40))).toBe(true);
    expect(isSampleGridKey('run-a', manifest.grid)).toBe(false);
  });

  test('a committed chunk is reused; a damaged one, or one made with another batch, is made again', async () => {
    const store = openStore(dir);
    const setKey = sampleSetKey(spec);
    const chunk = { first: 2, count: 2 };
    const reused = await runSampleChunk(store, config, weights, spec, chunk, {
      images: true,
      backend: 'wasm',
    });
    expect(reused.reused).toBe(true);

    const pixelsKey = sampleSetKeys.chunkPixels(setKey, 2);
    const good = await store.get(pixelsKey);
    const damaged = Uint8Array.from(good);
    damaged[0] ^= 0xff;
    await store.put(pixelsKey, damaged);
    const redone = await runSampleChunk(store, config, weights, spec, chunk, {
      images: true,
      backend: 'wasm',
    });
    expect(redone.reused).toBe(false);
    expect(sameBytes(await store.get(pixelsKey), good)).toBe(true);

    const otherBatch = await runSampleChunk(store, config, weights, { ...spec, batch: 1 }, chunk, {
      images: true,
      backend: 'wasm',
    });
    expect(otherBatch.reused).toBe(false);
  });

  test('reading a set whose chunk was altered fails with the object named', async () => {
    const store = openStore(dir);
    const setKey = sampleSetKey(spec);
    const key = sampleSetKeys.chunkPixels(setKey, 4);
    const bytes = Uint8Array.from(await store.get(key));
    bytes[1] ^= 1;
    await store.put(key, bytes);
    await expect(readSampleSet(store, setKey)).rejects.toThrow(
      `${store.uri}/${key}: contents do not match the set's record (damaged or rewritten)`,
    );
  });
});
