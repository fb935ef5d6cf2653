/**
 * The user-supplied feature network's loading path: a tiny TF.js layers model and a tiny graph model that
 * the test builds and saves itself, loaded from disk and from S3 (a real versitygw), with the FID input
 * preparation (scale, grey to RGB, bilinear resize with half-pixel centres, range) checked against the
 * same steps done by hand.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { FeatureExtractor, type ExtractorOptions } from '../core/eval/feature-extractor';
import { modelWriter } from '../core/eval/model-io';
import { Rng } from '../core/rng';
import { VersityGw } from '../infra/local';
import { modelFilesAt, openStore } from '../store';

const scratch = mkdtempSync(join(tmpdir(), 'ddpm-extractor-'));
const options: ExtractorOptions = { inputSize: 8, inputRange: '0..1' };

beforeAll(async () => {
  await tf.setBackend('cpu');
});

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function images(count: number, size: number, channels: number) {
  const rng = new Rng([12]);
  const pixels = Uint8Array.from({ length: count * size * size * channels }, () => rng.int(256));
  return { pixels, count, height: size, width: size, channels };
}

/** A conv layer whose 8x8x4 output map the extractor must average-pool itself. */
async function saveLayersModel(dir: string): Promise<tfl.LayersModel> {
  const model = tfl.sequential({
    layers: [
      tfl.layers.conv2d({
        inputShape: [8, 8, 3],
        filters: 4,
        kernelSize: 3,
        padding: 'same',
        activation: 'relu',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }),
        biasInitializer: 'ones',
      }),
    ],
  });
  mkdirSync(dir, { recursive: true });
  await model.save(modelWriter(async (name, bytes) => writeFileSync(join(dir, name), bytes)));
  return model;
}

/** A graph model as tensorflowjs_converter writes one: y = mean_hw(x) @ w, x: [-1, 8, 8, 3]. */
const W = [0.5, -1, 2, 0.25, -0.75, 1.5];
function saveGraphModel(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const dims = (...sizes: number[]) => ({ dim: sizes.map((size) => ({ size: String(size) })) });
  const modelJson = {
    format: 'graph-model',
    generatedBy: 'eval-extractor.test.ts',
    convertedBy: 'hand-written, in the tensorflowjs_converter output format',
    modelTopology: {
      node: [
        {
          name: 'x',
          op: 'Placeholder',
          attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: dims(-1, 8, 8, 3) } },
        },
        {
          name: 'axes',
          op: 'Const',
          attr: {
            value: { tensor: { dtype: 'DT_INT32', tensorShape: dims(2) } },
            dtype: { type: 'DT_INT32' },
          },
        },
        {
          name: 'w',
          op: 'Const',
          attr: {
            value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dims(3, 2) } },
            dtype: { type: 'DT_FLOAT' },
          },
        },
        {
          name: 'pooled',
          op: 'Mean',
          input: ['x', 'axes'],
          attr: { keep_dims: { b: false }, T: { type: 'DT_FLOAT' }, Tidx: { type: 'DT_INT32' } },
        },
        {
          name: 'y',
          op: 'MatMul',
          input: ['pooled', 'w'],
          attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: { type: 'DT_FLOAT' } },
        },
      ],
      library: {},
      versions: { producer: 1 },
    },
    weightsManifest: [
      {
        paths: ['group1-shard1of1.bin'],
        weights: [
          { name: 'axes', shape: [2], dtype: 'int32' },
          { name: 'w', shape: [3, 2], dtype: 'float32' },
        ],
      },
    ],
  };
  const weights = Buffer.concat([
    Buffer.from(new Int32Array([1, 2]).buffer),
    Buffer.from(new Float32Array(W).buffer),
  ]);
  writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJson));
  writeFileSync(join(dir, 'group1-shard1of1.bin'), weights);
}

/** The extractor's preparation, by hand: [0,1], grey tiled to RGB, bilinear half-pixel resize, range. */
function prepareByHand(imgs: ReturnType<typeof images>, o: ExtractorOptions): tf.Tensor4D {
  return tf.tidy(() => {
    let x = tf.div<tf.Tensor4D>(
      tf.tensor4d(Float32Array.from(imgs.pixels), [imgs.count, imgs.height, imgs.width, imgs.channels]),
      255,
    );
    if (imgs.channels === 1) x = tf.concat([x, x, x], 3);
    x = tf.image.resizeBilinear(x, [o.inputSize, o.inputSize], false, true);
    if (o.inputRange === '-1..1') x = tf.sub(tf.mul(x, 2), 1);
    if (o.inputRange === '0..255') x = tf.mul(x, 255);
    return x;
  });
}

describe('layers model from disk', () => {
  const dir = join(scratch, 'layers');
  let model: tfl.LayersModel;
  beforeAll(async () => {
    model = await saveLayersModel(dir);
  });

  test('features are the network output, average-pooled, for RGB images at the input size', async () => {
    const files = modelFilesAt(join(dir, 'model.json'));
    const extractor = await FeatureExtractor.load(files.read, files.where, options, files.modelJson);
    expect(extractor.kind).toBe('layers-model');
    const imgs = images(5, 8, 3);
    const f = await extractor.extract(imgs, 2);
    const expected = tf.tidy(() =>
      tf.mean(model.predict(prepareByHand(imgs, options)) as tf.Tensor4D, [1, 2]),
    );
    expect([f.count, f.dim]).toEqual([5, 4]);
    const want = await expected.data();
    f.values.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    expected.dispose();
    extractor.dispose();
  });

  test('grey images of another size are tiled to RGB and resized bilinearly with half-pixel centres (torch interpolate, align_corners=False)', async () => {
    const files = modelFilesAt(dir); // the folder works as well as the model.json path
    const o: ExtractorOptions = { inputSize: 8, inputRange: '-1..1' };
    const extractor = await FeatureExtractor.load(files.read, files.where, o, files.modelJson);
    const imgs = images(3, 5, 1);
    const f = await extractor.extract(imgs);
    const expected = tf.tidy(() => tf.mean(model.predict(prepareByHand(imgs, o)) as tf.Tensor4D, [1, 2]));
    const want = await expected.data();
    f.values.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
    expected.dispose();
    extractor.dispose();
  });

  test('the id names the files and the options', async () => {
    const files = modelFilesAt(dir);
    const load = (o: ExtractorOptions) => FeatureExtractor.load(files.read, files.where, o);
    const [a, b, c] = await Promise.all([load(options), load(options), load({ ...options, inputSize: 16 })]);
    expect(a.id).toBe(b.id);
    expect(c.id).not.toBe(a.id);
    [a, b, c].forEach((e) => e.dispose());
  });

  test('missing files give one-line errors naming them', async () => {
    const missing = modelFilesAt(join(scratch, 'nowhere', 'model.json'));
    await expect(FeatureExtractor.load(missing.read, missing.where, options)).rejects.toThrow(
      /nowhere\/model\.json: not a readable TF\.js model\.json \(object not found/,
    );
    const broken = join(scratch, 'broken');
    mkdirSync(broken, { recursive: true });
    writeFileSync(
      join(broken, 'model.json'),
      JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: ['gone.bin'], weights: [] }] }),
    );
    const files = modelFilesAt(broken);
    await expect(FeatureExtractor.load(files.read, files.where, options)).rejects.toThrow(
      /broken\/gone\.bin: weight file listed in model\.json/,
    );
  });
});

test('graph model (tensorflowjs_converter format) from disk', async () => {
  const dir = join(scratch, 'graph');
  saveGraphModel(dir);
  const files = modelFilesAt(join(dir, 'model.json'));
  const extractor = await FeatureExtractor.load(files.read, files.where, { ...options, outputNode: 'y' });
  expect(extractor.kind).toBe('graph-model');
  const imgs = images(4, 8, 3);
  const f = await extractor.extract(imgs, 3);
  expect([f.count, f.dim]).toEqual([4, 2]);
  // By hand: per image, mean of each channel over pixels (scaled to [0,1]), times w.
  for (let i = 0; i < 4; i++) {
    const mean = [0, 0, 0];
    for (let p = 0; p < 64; p++)
      for (let c = 0; c < 3; c++) mean[c] += imgs.pixels[i * 192 + p * 3 + c] / 255 / 64;
    for (let j = 0; j < 2; j++) {
      const expected = mean[0] * W[j] + mean[1] * W[2 + j] + mean[2] * W[4 + j];
      expect(f.values[i * 2 + j]).toBeCloseTo(expected, 5);
    }
  }
  extractor.dispose();
});

describe('from S3 (versitygw)', () => {
  let gateway: VersityGw;
  let savedEnv: NodeJS.ProcessEnv;
  beforeAll(async () => {
    gateway = await VersityGw.start({ buckets: ['models'] });
    savedEnv = { ...process.env };
    delete process.env.AWS_PROFILE;
    Object.assign(process.env, gateway.s3Env());
  });
  afterAll(async () => {
    process.env = savedEnv;
    await gateway?.dispose();
  });

  test('a graph model under an s3:// prefix loads and extracts the same features as from disk', async () => {
    const dir = join(scratch, 'graph-s3');
    saveGraphModel(dir);
    const bucket = openStore('s3://models/feature-nets/tiny');
    for (const name of ['model.json', 'group1-shard1of1.bin']) await bucket.putFile(name, join(dir, name));
    const s3 = modelFilesAt('s3://models/feature-nets/tiny/model.json');
    const local = modelFilesAt(dir);
    const o = { ...options, outputNode: 'y' };
    const fromS3 = await FeatureExtractor.load(s3.read, s3.where, o, s3.modelJson);
    const fromDisk = await FeatureExtractor.load(local.read, local.where, o, local.modelJson);
    expect(fromS3.where).toBe('s3://models/feature-nets/tiny');
    expect(fromS3.id).toBe(fromDisk.id);
    const imgs = images(3, 8, 3);
    expect((await fromS3.extract(imgs)).values).toEqual((await fromDisk.extract(imgs)).values);
    fromS3.dispose();
    fromDisk.dispose();
  });
});
