import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { Purpose, Rng } from '../rng';
import type { FeatureMatrix } from './frechet';

/**
 * The built-in quality classifier: a small convnet trained on the dataset's own labels (digits, CIFAR-10
 * classes) that needs no download. Its penultimate layer gives the features of the "classifier FID"
 * (a Fréchet distance in this network's feature space: comparable between runs on the same dataset and
 * classifier, never with published Inception FIDs), its softmax the share of confidently classified
 * samples and the class histogram.
 *
 * Training is a pure function of (seed, data, backend): seeded initialisers, a per-epoch permutation from
 * the project's counter-based Rng, no dropout, plain Adam.
 */
export interface LabelledImages {
  count: number;
  height: number;
  width: number;
  channels: number;
  pixels: Uint8Array;
  labels: Uint8Array;
}

export interface ClassifierSettings {
  seed: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
}

export const CLASSIFIER_DEFAULTS: ClassifierSettings = {
  seed: 0,
  epochs: 4,
  batchSize: 64,
  learningRate: 2e-3,
};

export const CLASSIFIER_FORMAT = 'ddpm-quality-classifier';
export const FEATURE_LAYER = 'features';

export interface ClassifierInfo {
  format: typeof CLASSIFIER_FORMAT;
  version: 1;
  settings: ClassifierSettings;
  classes: number;
  inputShape: [number, number, number];
  featureDim: number;
  trainImages: number;
  heldOutImages: number;
  /** Top-1 accuracy on the held-out split (on the training images when the source has none). */
  heldOutAccuracy: number;
  trainSeconds: number;
  backend: string;
}

/**
 * Two conv blocks, then the feature layer and the class logits as convolutions that cover the whole
 * remaining map (the same as dense layers on the flattened map): tfjs-node's fused dense kernel leaks one
 * tensor per call at inference, its fused convolution does not.
 */
function buildModel(shape: [number, number, number], classes: number, seed: number): tfl.LayersModel {
  const colour = shape[2] > 1;
  const [c1, c2, f] = colour ? [32, 64, 128] : [16, 32, 64];
  let layer = 0;
  const init = () => tfl.initializers.glorotUniform({ seed: seed * 16 + layer++ });
  const input = tfl.input({ shape });
  const apply = (l: { apply: (x: tfl.SymbolicTensor) => unknown }, x: tfl.SymbolicTensor) =>
    l.apply(x) as tfl.SymbolicTensor;
  let x = apply(
    tfl.layers.conv2d({
      filters: c1,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(),
    }),
    input,
  );
  x = apply(tfl.layers.maxPooling2d({ poolSize: 2 }), x);
  x = apply(
    tfl.layers.conv2d({
      filters: c2,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(),
    }),
    x,
  );
  x = apply(tfl.layers.maxPooling2d({ poolSize: 2 }), x);
  const [h, w] = [Math.floor(Math.floor(shape[0] / 2) / 2), Math.floor(Math.floor(shape[1] / 2) / 2)];
  const map = apply(
    tfl.layers.conv2d({
      filters: f,
      kernelSize: [h, w],
      activation: 'relu',
      kernelInitializer: init(),
      name: FEATURE_LAYER,
    }),
    x,
  );
  const logits = apply(
    tfl.layers.conv2d({ filters: classes, kernelSize: 1, kernelInitializer: init() }),
    map,
  );
  const probs = apply(
    tfl.layers.activation({ activation: 'softmax', name: 'probabilities' }),
    apply(tfl.layers.flatten(), logits),
  );
  return tfl.model({ inputs: input, outputs: probs });
}

const toInput = (pixels: Uint8Array, count: number, h: number, w: number, c: number) =>
  tf.tidy(() => tf.div(tf.tensor4d(Float32Array.from(pixels), [count, h, w, c]), 255));

function slice(
  images: LabelledImages | Omit<LabelledImages, 'labels'>,
  order: ArrayLike<number>,
): Uint8Array {
  const per = images.height * images.width * images.channels;
  const out = new Uint8Array(order.length * per);
  for (let i = 0; i < order.length; i++)
    out.set(images.pixels.subarray(order[i] * per, (order[i] + 1) * per), i * per);
  return out;
}

export interface TrainProgress {
  epoch: number;
  batch: number;
  batches: number;
  loss: number;
}

/** An untrained classifier of the architecture trainClassifier uses (benchmarks time its forward pass). */
export function untrainedClassifier(
  shape: [number, number, number],
  classes: number,
  seed = 0,
): QualityClassifier {
  return new QualityClassifier(buildModel(shape, classes, seed));
}

export async function trainClassifier(
  train: LabelledImages,
  heldOut: LabelledImages | null,
  settings: ClassifierSettings = CLASSIFIER_DEFAULTS,
  onProgress?: (p: TrainProgress) => void | Promise<void>,
): Promise<{ model: QualityClassifier; info: ClassifierInfo }> {
  const started = performance.now();
  const shape: [number, number, number] = [train.height, train.width, train.channels];
  const classes = train.labels.reduce((m, l) => Math.max(m, l), 0) + 1;
  if (classes < 2) throw new Error('the quality classifier needs at least two classes in the labels');
  const model = buildModel(shape, classes, settings.seed);
  model.compile({ optimizer: tf.train.adam(settings.learningRate), loss: 'categoricalCrossentropy' });
  const batches = Math.ceil(train.count / settings.batchSize);
  for (let epoch = 0; epoch < settings.epochs; epoch++) {
    const order = new Rng([settings.seed, Purpose.DataOrder, epoch]).permutation(train.count);
    for (let b = 0; b < batches; b++) {
      const idx = order.subarray(b * settings.batchSize, Math.min((b + 1) * settings.batchSize, train.count));
      const x = toInput(slice(train, idx), idx.length, ...shape);
      const y = tf.oneHot(
        tf.tensor1d(
          Int32Array.from(idx, (i) => train.labels[i]),
          'int32',
        ),
        classes,
      ) as tf.Tensor2D;
      const loss = (await model.trainOnBatch(x, y)) as number;
      tf.dispose([x, y]);
      await onProgress?.({ epoch, batch: b + 1, batches, loss });
    }
  }
  const classifier = new QualityClassifier(model);
  const check = heldOut ?? train;
  const { probs } = await classifier.run(check);
  const info: ClassifierInfo = {
    format: CLASSIFIER_FORMAT,
    version: 1,
    settings,
    classes,
    inputShape: shape,
    featureDim: classifier.featureDim,
    trainImages: train.count,
    heldOutImages: heldOut?.count ?? 0,
    heldOutAccuracy: accuracy(probs, check.labels, classes),
    trainSeconds: (performance.now() - started) / 1000,
    backend: tf.getBackend(),
  };
  return { model: classifier, info };
}

export function accuracy(probs: Float32Array, labels: Uint8Array, classes: number): number {
  let right = 0;
  for (let i = 0; i < labels.length; i++) if (argmax(probs, i * classes, classes) === labels[i]) right++;
  return right / labels.length;
}

function argmax(values: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let k = 1; k < n; k++) if (values[offset + k] > values[offset + best]) best = k;
  return best;
}

/** A trained classifier: penultimate features and class probabilities for uint8 images. */
export class QualityClassifier {
  private readonly both: tfl.LayersModel;
  readonly classes: number;
  readonly featureDim: number;

  constructor(readonly model: tfl.LayersModel) {
    // The feature layer's map is 1 x 1 x featureDim.
    const map = model.getLayer(FEATURE_LAYER).output as tfl.SymbolicTensor;
    // Named: an auto-named layer here would be 'flatten_Flatten1' in a fresh process, which is also the
    // name the saved model's own flatten layer carries when a cached classifier is loaded.
    const features = tfl.layers.flatten({ name: 'features_flat' }).apply(map) as tfl.SymbolicTensor;
    this.both = tfl.model({ inputs: model.inputs, outputs: [features, model.outputs[0]] });
    this.classes = model.outputs[0].shape[1] as number;
    this.featureDim = features.shape[1] as number;
  }

  async run(
    images: Omit<LabelledImages, 'labels'>,
    batchSize = 256,
  ): Promise<{ features: FeatureMatrix; probs: Float32Array }> {
    const { count, height: h, width: w, channels: c } = images;
    const features = new Float32Array(count * this.featureDim);
    const probs = new Float32Array(count * this.classes);
    for (let first = 0; first < count; first += batchSize) {
      const n = Math.min(batchSize, count - first);
      const per = h * w * c;
      const x = toInput(images.pixels.subarray(first * per, (first + n) * per), n, h, w, c);
      const [f, p] = this.both.predict(x) as tf.Tensor[];
      features.set(await f.data(), first * this.featureDim);
      probs.set(await p.data(), first * this.classes);
      tf.dispose([x, f, p]);
    }
    return { features: { count, dim: this.featureDim, values: features }, probs };
  }

  dispose(): void {
    this.model.dispose();
  }
}

export interface ClassifierPredictionSummary {
  /** Share of images whose top class has probability >= threshold. */
  confidentShare: number;
  threshold: number;
  /** Images per predicted (top-1) class. */
  histogram: number[];
}

export function summarizePredictions(
  probs: Float32Array,
  classes: number,
  threshold = 0.9,
): ClassifierPredictionSummary {
  const count = probs.length / classes;
  const histogram = new Array<number>(classes).fill(0);
  let confident = 0;
  for (let i = 0; i < count; i++) {
    const top = argmax(probs, i * classes, classes);
    histogram[top]++;
    if (probs[i * classes + top] >= threshold) confident++;
  }
  return { confidentShare: confident / count, threshold, histogram };
}
