/**
 * The built-in quality classifier on the embedded MNIST digits: deterministic from its seed, accurate on
 * the declared held-out split, stored and reloaded through TF.js model files, and its score tells real
 * digits from noise. Native backend (what the trainers use); its training time is printed, not asserted.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../core/backend';
import { EMBEDDED_DIGITS, loadImageDataset } from '../core/data';
import {
  CLASSIFIER_DEFAULTS,
  QualityClassifier,
  accuracy,
  summarizePredictions,
  trainClassifier,
  untrainedClassifier,
  type LabelledImages,
} from '../core/eval/classifier';
import { frechetDistance, gaussianStats } from '../core/eval/frechet';
import { modelReader, modelWriter } from '../core/eval/model-io';
import { Rng } from '../core/rng';

jest.setTimeout(600_000);

let train: LabelledImages;
let heldOut: LabelledImages;
let first: Awaited<ReturnType<typeof trainClassifier>>;

beforeAll(async () => {
  await initBackend('tensorflow');
  const load = async (split: 'train' | 'test') => {
    const d = await loadImageDataset(EMBEDDED_DIGITS, { split });
    return { ...d, labels: d.labels! };
  };
  train = await load('train');
  heldOut = await load('test');
  first = await trainClassifier(train, heldOut);
  process.stdout.write(
    `digits classifier: ${(100 * first.info.heldOutAccuracy).toFixed(2)}% held-out accuracy on ` +
      `${first.info.heldOutImages} images, trained in ${first.info.trainSeconds.toFixed(1)} s on ${first.info.backend}\n`,
  );
});

afterAll(() => first?.model.dispose());

test('reaches more than 97% on the held-out digits', () => {
  expect(first.info.heldOutImages).toBe(heldOut.count);
  expect(first.info.heldOutAccuracy).toBeGreaterThan(0.97);
  expect(first.info.classes).toBe(10);
});

test('training is deterministic from the seed', async () => {
  // One epoch on every third training image is enough to show it (the full training ran in beforeAll).
  const picks = Array.from({ length: Math.floor(train.count / 3) }, (_, i) => i * 3);
  const subset = {
    ...train,
    count: picks.length,
    pixels: Uint8Array.from(picks.flatMap((i) => Array.from(train.pixels.subarray(i * 784, (i + 1) * 784)))),
    labels: Uint8Array.from(picks, (i) => train.labels[i]),
  };
  const settings = { ...CLASSIFIER_DEFAULTS, epochs: 1 };
  const weightsOf = async (seed: number) => {
    const { model } = await trainClassifier(subset, null, { ...settings, seed });
    const bytes = await Promise.all(
      model.model.getWeights().map(async (w) => Buffer.from((await w.data()).buffer)),
    );
    model.dispose();
    return bytes;
  };
  const a = await weightsOf(0);
  const b = await weightsOf(0);
  expect(b).toHaveLength(a.length);
  b.forEach((w, i) => expect(w.equals(a[i])).toBe(true));
  const c = await weightsOf(1);
  expect(c[0].equals(a[0])).toBe(false);
});

test('stored as TF.js model files and reloaded, it predicts the same', async () => {
  // On the cpu backend: under jest, tfjs-node's arrays come from another realm and TF.js's weight encoder
  // rejects them (the trainers, plain Node, store the trained one on the native backend and load it at
  // the next evaluation: see pipeline-evaluation).
  await tf.setBackend('cpu');
  try {
    // The untrained network: the round trip does not depend on what the weights learned.
    const model = untrainedClassifier([28, 28, 1], 10, 5);
    const files = new Map<string, Uint8Array>();
    await model.model.save(
      modelWriter(async (name, bytes) => {
        files.set(name, typeof bytes === 'string' ? Buffer.from(bytes) : bytes);
      }),
    );
    expect([...files.keys()].sort()).toEqual(['model.json', 'weights.bin']);
    const reloaded = new QualityClassifier(
      await tfl.loadLayersModel(modelReader(async (name) => files.get(name)!, 'memory')),
    );
    const some = { ...heldOut, count: 50, pixels: heldOut.pixels.subarray(0, 50 * 784) };
    const a = await model.run(some);
    const b = await reloaded.run(some);
    expect(b.probs).toEqual(a.probs);
    expect(b.features.values).toEqual(a.features.values);
    reloaded.dispose();
    model.dispose();
  } finally {
    await tf.setBackend('tensorflow');
  }
});

test('its score separates real held-out digits from noise', async () => {
  const reference = await gaussianStats((await first.model.run(train)).features);
  const before = tf.memory().numTensors;
  const real = await first.model.run(heldOut);
  // Inference leaves no tensors behind (tfjs-node's fused dense kernel would leak one per call).
  expect(tf.memory().numTensors).toBe(before);
  const rng = new Rng([4]);
  const noise = Uint8Array.from({ length: 500 * 784 }, () => rng.int(256));
  const fake = await first.model.run({ ...heldOut, count: 500, pixels: noise });
  const realFid = (await frechetDistance(reference, await gaussianStats(real.features))).distance;
  const fakeFid = (await frechetDistance(reference, await gaussianStats(fake.features))).distance;
  expect(fakeFid).toBeGreaterThan(20 * realFid);
  const realSummary = summarizePredictions(real.probs, 10);
  expect(realSummary.confidentShare).toBeGreaterThan(0.9);
  expect(realSummary.histogram.reduce((a, b) => a + b, 0)).toBe(heldOut.count);
  // About 100 held-out images per class.
  for (const n of realSummary.histogram) expect(n).toBeGreaterThan(80);
  expect(accuracy(real.probs, heldOut.labels, 10)).toBeCloseTo(first.info.heldOutAccuracy, 10);
});
