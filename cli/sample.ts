/**
 * Samples images from a run's checkpoint (its EMA weights) into the run's store as a sample set: a PNG
 * grid, one PNG per image, and the raw bytes evaluation reads. Locally in this process by default; with
 * --on-pool, split into chunks across the run's trainer pool through Temporal.
 *
 *   npm run sample -- --run-id ID [--checkpoint STEP] [--sampler ddpm|ddim] [--steps S] [--count N]
 *                     [--batch B] [--seed s] [--out DIR] [--on-pool]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { initBackend } from '../core/backend';
import {
  DEFAULT_DDIM_STEPS,
  DEFAULT_SAMPLE_BATCH,
  SAMPLER_METHODS,
  SamplerChoice,
  SamplerMethod,
  SampleSetManifest,
  checkpointConfig,
  encodeImagePng,
  loadSamplingWeights,
  readSampleSet,
  resolveSamplerChoice,
  runSamplingSeed,
  sampleSetKey,
  sampleSetLocally,
} from '../core/sampling';
import { sampleSetKeys } from '../core/store-layout';
import { ObjectStore, openStore } from '../store';
import {
  SAMPLE_IMAGES_WORKFLOW,
  SampleChunkHeartbeat,
  SampleImagesInput,
  SampleImagesResult,
  sampleImagesProgressQuery,
  sampleImagesWorkflowId,
} from '../workflows/sampling-api';
import { runCli } from './errors';
import { nonNegativeInt, positiveInt } from './options';
import { Backend, pendingHeartbeats, poolTarget, resultWithTicks, startOrAttach } from './pool-work';
import { ProgressLine, progressLine } from './progress';
import { BACKENDS, absoluteStoreUri, objectUri, runIdOption } from './run-input';
import { innermostMessage } from './run-report';
import { openTemporalSession } from './temporal-session';

function eta(value: string): number {
  const x = Number(value);
  if (!(x >= 0 && x <= 1)) throw new InvalidArgumentError(`expected a number from 0 to 1, got '${value}'`);
  return x;
}

const program = new Command('sample')
  .description(
    "Generate images from a run's checkpoint (its EMA weights) and store them under " +
      '<store>/<run-id>/samples/<step>/<sampler>-seed<seed>-n<count>/: grid.png (the first 64), images/*.png ' +
      'and the raw chunks evaluation reads. Runs in this process unless --on-pool. The same checkpoint, ' +
      'sampler, steps, seed and batch give the same images, however the count is split.',
  )
  .requiredOption('--run-id <id>', 'the run whose checkpoints to use', runIdOption)
  .option(
    '--store <uri>',
    "the run's store, a directory or s3://bucket/prefix (default ./runs; with --on-pool the run's own)",
  )
  .option(
    '--checkpoint <step>',
    'the checkpoint to sample from (default: the newest valid one)',
    nonNegativeInt,
  )
  .addOption(
    new Option(
      '--sampler <name>',
      "'ddim' (any step count) or 'ddpm' (the paper's ancestral sampler, all T steps)",
    )
      .choices(Object.keys(SAMPLER_METHODS))
      .default('ddim'),
  )
  .option('--steps <n>', `DDIM steps (default ${DEFAULT_DDIM_STEPS}); ddpm always takes all T`, positiveInt)
  .option('--eta <x>', 'DDIM eta: 0 deterministic (default), 1 DDPM-like noise', eta)
  .option('--no-clip', 'do not clip predicted x0 to [-1, 1] (clipping is on by default for images)')
  .option('--count <n>', 'images to generate', positiveInt, 64)
  .option(
    '--batch <n>',
    'images denoised together (memory/speed; part of what fixes the images)',
    positiveInt,
    DEFAULT_SAMPLE_BATCH,
  )
  .option(
    '--seed <n>',
    "noise seed (default: the run's own sampling seed, as in its periodic grids)",
    nonNegativeInt,
  )
  .option('--out <dir>', 'also copy grid.png and images/*.png into this local directory')
  .option('--no-images', 'skip the per-image PNGs (the grid and raw chunks are still written)')
  .option(
    '--on-pool',
    "split the work across the run's trainer pool through Temporal instead of this process",
  )
  .option('--chunk <n>', 'with --on-pool: images per chunk activity, a multiple of --batch', positiveInt)
  .option('--pool <queue>', "with --on-pool: the trainers' task queue (default: the run's pool)")
  .addOption(
    new Option(
      '--backend <name>',
      "TF.js backend (with --on-pool: the trainers', default the run's)",
    ).choices(BACKENDS),
  )
  .addHelpText(
    'after',
    '\nx0 clipping: each denoising step clips the predicted clean image to the data range [-1, 1] (the\n' +
      "reference code's clip_denoised); --no-clip turns it off.\n" +
      '\nExamples:\n' +
      '  npm run sample -- --run-id digits-20250101-120000 --count 16 --out ./samples\n' +
      '  npm run sample -- --run-id digits-20250101-120000 --sampler ddpm --count 8\n' +
      '  npm run sample -- --run-id cifar10-20250101-120000 --count 10000 --batch 128 --no-images --on-pool\n',
  );

interface Options {
  runId: string;
  store?: string;
  checkpoint?: number;
  sampler: SamplerMethod;
  steps?: number;
  eta?: number;
  clip: boolean;
  count: number;
  batch: number;
  seed?: number;
  out?: string;
  images: boolean;
  onPool?: boolean;
  chunk?: number;
  pool?: string;
  backend?: Backend;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

function samplerChoice(o: Options): SamplerChoice {
  if (o.sampler !== 'ddim' && o.eta !== undefined) throw new Error('--eta applies to --sampler ddim only');
  return { kind: SAMPLER_METHODS[o.sampler], steps: o.steps, eta: o.eta, clip: o.clip };
}

/** Images per second and an ETA-friendly integer count, from a running total that may be fractional. */
function imageProgress(total: number): (imagesDone: number) => void {
  let line: ProgressLine | undefined;
  let finished = false;
  const started = performance.now();
  return (imagesDone) => {
    if (finished) return;
    line ??= progressLine('sample', total, 0);
    const seconds = (performance.now() - started) / 1000;
    line.update(Math.min(total, Math.floor(imagesDone)), { 'img/s': seconds > 0 ? imagesDone / seconds : 0 });
    if (imagesDone >= total) {
      finished = true;
      line.stop();
    }
  };
}

async function sampleHere(o: Options): Promise<{ store: ObjectStore; manifest: SampleSetManifest }> {
  const store = openStore(absoluteStoreUri(o.store ?? 'runs'));
  const w = await loadSamplingWeights(store, o.runId, o.checkpoint);
  for (const s of w.skipped) log(`checkpoint ${s.step} skipped: ${s.reason}`);
  const backend = await initBackend(o.backend ?? 'auto', log);
  const spec = {
    runId: o.runId,
    step: w.step,
    sampler: resolveSamplerChoice(w.config, samplerChoice(o)),
    seed: o.seed ?? runSamplingSeed(w.config),
    count: o.count,
    batch: o.batch,
  };
  log(
    `run ${o.runId}: checkpoint of step ${w.step} (preset ${w.config.preset}); ${o.count} images, ` +
      `${spec.sampler.kind === 'ancestral' ? 'ddpm' : 'ddim'} ${spec.sampler.steps} steps, batch ${o.batch}, seed ${spec.seed}`,
  );
  const show = imageProgress(o.count);
  const manifest = await sampleSetLocally(store, w.config, w.ema, spec, {
    images: o.images,
    backend: backend.name,
    onProgress: (p) => show(p.imagesEquivalent),
  });
  return { store, manifest };
}

async function sampleOnPool(o: Options): Promise<{ store: ObjectStore; manifest: SampleSetManifest }> {
  const session = await openTemporalSession(log);
  try {
    const target = await poolTarget(session, o.runId, { store: o.store, pool: o.pool, backend: o.backend });
    const store = openStore(target.storeUri);
    const { step, config } = await checkpointConfig(store, o.runId, o.checkpoint);
    const sampler = resolveSamplerChoice(config, samplerChoice(o));
    if (o.chunk !== undefined && o.chunk % o.batch !== 0) {
      throw new Error(`--chunk ${o.chunk} must be a multiple of --batch ${o.batch}`);
    }
    const input: SampleImagesInput = {
      runId: o.runId,
      storeUri: target.storeUri,
      step,
      sampler,
      seed: o.seed ?? runSamplingSeed(config),
      count: o.count,
      batch: o.batch,
      chunkImages: o.chunk,
      images: o.images,
      backend: target.backend,
      pool: target.pool,
    };
    await session.ensureWorker({ backend: target.backend, workers: 1 });
    const workflowId = sampleImagesWorkflowId(input);
    const { handle, attached } = await startOrAttach(
      session.client,
      SAMPLE_IMAGES_WORKFLOW,
      workflowId,
      input,
    );
    log(
      `${attached ? 'attached to' : 'started'} ${workflowId} on pool ${target.pool}: checkpoint ${step}, ${o.count} images ` +
        `(Ctrl-C detaches; the same command re-attaches)\n  ${session.whereToSee(workflowId)}`,
    );
    const show = imageProgress(o.count);
    let checkedWorkerAt = Date.now();
    let result: SampleImagesResult;
    try {
      result = await resultWithTicks<SampleImagesResult>(handle, async () => {
        const progress = await handle.query(sampleImagesProgressQuery);
        const running = pendingHeartbeats<SampleChunkHeartbeat>(await handle.describe(), 'sampleChunk');
        show(progress.imagesDone + running.reduce((sum, b) => sum + b.imagesDone, 0));
        if (Date.now() - checkedWorkerAt > 15_000) {
          checkedWorkerAt = Date.now();
          await session.ensureWorker({ backend: target.backend, workers: 1 }, { recheck: true });
        }
      });
    } catch (err) {
      throw new Error(`sampling failed: ${innermostMessage(err)}`);
    }
    show(o.count);
    log(
      `${result.chunks} chunks on ${result.backends.join(', ')}${result.reusedChunks ? ` (${result.reusedChunks} reused)` : ''}`,
    );
    const manifest = await readManifest(store, result.setKey);
    return { store, manifest };
  } finally {
    await session.close();
  }
}

async function readManifest(store: ObjectStore, setKey: string): Promise<SampleSetManifest> {
  const raw = await store.get(sampleSetKeys.manifest(setKey));
  return JSON.parse(Buffer.from(raw).toString('utf8')) as SampleSetManifest;
}

/** Copies the set's grid and (when written) its images out of the store into a local directory. */
async function copyOut(store: ObjectStore, manifest: SampleSetManifest, dir: string): Promise<void> {
  const setKey = sampleSetKey(manifest);
  mkdirSync(path.join(dir, 'images'), { recursive: true });
  writeFileSync(path.join(dir, 'grid.png'), await store.get(manifest.grid));
  if (!manifest.images) return;
  const { pixels } = await readSampleSet(store, setKey);
  const per = manifest.height * manifest.width * manifest.channels;
  for (let i = 0; i < manifest.count; i++) {
    const name = path.basename(sampleSetKeys.image(setKey, i));
    writeFileSync(
      path.join(dir, 'images', name),
      encodeImagePng(pixels.subarray(i * per, (i + 1) * per), manifest),
    );
  }
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  if (o.chunk !== undefined && !o.onPool) throw new Error('--chunk only applies with --on-pool');
  if (o.pool !== undefined && !o.onPool) throw new Error('--pool only applies with --on-pool');
  const { store, manifest } = o.onPool ? await sampleOnPool(o) : await sampleHere(o);
  const setKey = sampleSetKey(manifest);
  if (o.out) {
    await copyOut(store, manifest, path.resolve(o.out));
    log(`copied to ${path.resolve(o.out)}`);
  }
  log(`grid: ${objectUri(store.uri, manifest.grid)}`);
  process.stdout.write(`${objectUri(store.uri, setKey)}\n`);
});
