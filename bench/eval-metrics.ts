/**
 * Evaluation costs on the chosen TF.js backend, printed as one JSON object: one bits/dim evaluation of N
 * images (K KL timesteps per image, or the exact bound), feature extraction images/s of the built-in
 * classifier (and of a user-supplied extractor with --extractor), and the float64 Fréchet distance at the
 * classifier's and Inception's feature sizes.
 *
 *   npm run bench:eval -- [--preset digits] [--images 256] [--timesteps 16] [--extractor PATH|s3://]
 *
 * Uses the preset's initial weights and synthetic pixels: the cost does not depend on either.
 */
import { Command, Option } from 'commander';
import { initBackend } from '../core/backend';
import { BACKEND_CHOICES, type BackendChoice } from '../core/backend/names';
import { bitsPerDim } from '../core/eval/bits-per-dim';
import { untrainedClassifier } from '../core/eval/classifier';
import { frechetDistance, gaussianStats } from '../core/eval/frechet';
import { ParamLayout } from '../core/model/params';
import { unetParamSpecs } from '../core/model/unet';
import { presetNames } from '../core/presets';
import { Rng } from '../core/rng';
import { epsModelFromWeights } from '../core/sampling';
import { noiseScheduleFor } from '../core/diffusion/schedule';
import { loadExtractor } from '../activities/evaluate';
import { runCli } from '../common/errors';
import { positiveInt, resolveRunConfig } from '../common/options';
import { syntheticImages } from './synthetic-images';

const program = new Command('bench:eval')
  .description(
    'Measure evaluation costs (bits/dim, feature extraction, Fréchet distance); prints one JSON object',
  )
  .addOption(new Option('--preset <name>', 'model preset').choices(presetNames()).default('digits'))
  .addOption(new Option('--backend <name>', 'TF.js backend').choices(BACKEND_CHOICES).default('auto'))
  .option('--images <n>', 'images in the timed bits/dim evaluation', positiveInt, 256)
  .option('--timesteps <k|all>', "KL timesteps per image, or 'all' (the exact bound)", '16')
  .option('--batch <n>', 'images per model call', positiveInt, 64)
  .option('--features <n>', 'images through each feature network', positiveInt, 512)
  .option('--extractor <uri>', 'also time this TF.js feature network (e.g. Inception-v3 at 299x299)')
  .option('--fid-dims <list>', 'feature sizes of the timed Fréchet distances', '64,2048');

interface Options {
  preset: string;
  backend: BackendChoice;
  images: number;
  timesteps: string;
  batch: number;
  features: number;
  extractor?: string;
  fidDims: string;
}

const seconds = (start: number) => (performance.now() - start) / 1000;

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const backend = await initBackend(o.backend, log);
  const config = resolveRunConfig(o.preset, {});
  const { imageSize: size, inChannels: channels } = config.model;
  const timesteps = o.timesteps === 'all' ? 'all' : positiveInt(o.timesteps);
  const weights = new ParamLayout(unetParamSpecs(config.model)).initialize(config.train.seed);

  // One bits/dim evaluation (after a warm-up call that builds the backend's kernels).
  const images = syntheticImages(o.images, size, channels);
  const schedule = noiseScheduleFor(config.diffusion);
  const { model, dispose } = epsModelFromWeights(config, weights);
  const small = syntheticImages(2, size, channels);
  await bitsPerDim(schedule, model, small, { timestepsPerImage: 1, seed: 0, batchSize: 2 });
  let start = performance.now();
  const bpd = await bitsPerDim(schedule, model, images, {
    timestepsPerImage: timesteps,
    seed: 0,
    batchSize: o.batch,
  });
  const bpdSeconds = seconds(start);
  dispose();

  // The built-in classifier's features and predictions.
  const features = syntheticImages(o.features, size, channels);
  const classifier = untrainedClassifier([size, size, channels], 10);
  await classifier.run({ ...small });
  start = performance.now();
  const classified = await classifier.run(features, o.batch);
  const classifierSeconds = seconds(start);
  classifier.dispose();

  let extractor: Record<string, unknown> | null = null;
  if (o.extractor) {
    const net = await loadExtractor({ uri: o.extractor });
    await net.extract(small);
    start = performance.now();
    const f = await net.extract(features, o.batch);
    const s = seconds(start);
    extractor = { uri: o.extractor, kind: net.kind, featureDim: f.dim, imagesPerSec: o.features / s };
    net.dispose();
  }

  // Fréchet distance from features (covariances, square root, eigenvalues), float64 in JS.
  const frechet: Record<string, number> = {};
  for (const dim of o.fidDims.split(',').map(Number)) {
    const rng = new Rng([dim]);
    const n = Math.max(2 * dim, 256);
    const make = () => ({
      count: n,
      dim,
      values: Float32Array.from({ length: n * dim }, () => rng.normal()),
    });
    const [a, b] = [make(), make()];
    start = performance.now();
    await frechetDistance(await gaussianStats(a), await gaussianStats(b));
    frechet[`dim${dim}_n${n}_seconds`] = seconds(start);
  }

  process.stdout.write(
    `${JSON.stringify(
      {
        backend: backend.name,
        preset: config.preset,
        bitsPerDim: {
          images: o.images,
          timestepsPerImage: bpd.timestepsPerImage,
          estimator: bpd.estimator,
          modelCallsPerImage: bpd.timestepsPerImage + 1,
          seconds: bpdSeconds,
          imagesPerSec: o.images / bpdSeconds,
        },
        classifierFeatures: {
          images: o.features,
          featureDim: classified.features.dim,
          imagesPerSec: o.features / classifierSeconds,
        },
        extractor,
        frechet,
      },
      null,
      2,
    )}\n`,
  );
});
