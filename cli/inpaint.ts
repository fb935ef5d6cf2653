/**
 * Fills the masked region of an image with a run's unconditional model (RePaint): white mask pixels keep
 * the image, black ones are generated. Locally by default; with --on-pool on the run's trainer pool.
 *
 *   npm run inpaint -- --run-id ID --image PATH --mask PATH [--out PATH] [--checkpoint STEP] [--on-pool]
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { initBackend } from '../core/backend';
import { describeError } from '../core/data/errors';
import { REPAINT_RESAMPLINGS } from '../core/diffusion';
import { decodeKeepMask, decodeModelImage, inpaintImages, repaintSamplerFor } from '../core/inpaint';
import type { RunConfig } from '../core/presets';
import { checkpointConfig, encodeImagePng, loadSamplingWeights } from '../core/sampling';
import { inpaintKeys, runKeys } from '../core/store-layout';
import { openStore } from '../store';
import {
  INPAINT_IMAGE_WORKFLOW,
  InpaintHeartbeat,
  InpaintImageInput,
  InpaintImageResult,
  RePaintSettings,
} from '../workflows/sampling-api';
import { runCli } from './errors';
import { nonNegativeInt, positiveInt } from './options';
import { Backend, pendingHeartbeats, poolTarget, resultWithTicks, startOrAttach } from './pool-work';
import { ProgressLine, progressLine } from './progress';
import { BACKENDS, absoluteStoreUri, objectUri, runIdOption } from './run-input';
import { innermostMessage } from './run-report';
import { openTemporalSession } from './temporal-session';

const program = new Command('inpaint')
  .description(
    "Fill the masked region of a PNG with a run's unconditional model (RePaint, Lugmayr et al. 2022): at " +
      'every step the kept pixels are replaced by their forward-noised values, and each stretch of steps is ' +
      'redone several times so the filled region agrees with them. The kept pixels come out unchanged.',
  )
  .requiredOption('--run-id <id>', 'the run whose checkpoint to use', runIdOption)
  .requiredOption('--image <png>', "the image, at the model's size (e.g. 28x28 grayscale for digits)")
  .requiredOption('--mask <png>', 'same size: white (>= 128) keeps the pixel, black is filled')
  .option('--out <png>', 'where to write the result (default: <image>-inpainted.png in this directory)')
  .option(
    '--store <uri>',
    "the run's store, a directory or s3://bucket/prefix (default ./runs; with --on-pool the run's own)",
  )
  .option('--checkpoint <step>', 'the checkpoint to use (default: the newest valid one)', nonNegativeInt)
  .option('--steps <n>', "respaced reverse steps (default T/4: RePaint's 250 of 1000)", positiveInt)
  .option(
    '--jump-length <n>',
    "steps jumped back at each resampling point (default steps/25: RePaint's 10 at 250)",
    positiveInt,
  )
  .option(
    '--resample <n>',
    `times each stretch is denoised; 1 = no resampling (default ${REPAINT_RESAMPLINGS})`,
    positiveInt,
  )
  .option('--seed <n>', 'noise seed', nonNegativeInt, 0)
  .option('--on-pool', "run on the run's trainer pool through Temporal instead of this process")
  .option('--pool <queue>', "with --on-pool: the trainers' task queue (default: the run's pool)")
  .addOption(
    new Option(
      '--backend <name>',
      "TF.js backend (with --on-pool: the trainers', default the run's)",
    ).choices(BACKENDS),
  )
  .addHelpText(
    'after',
    "\nMask: white (>= 128) keeps the pixel, black is filled (RePaint's convention); only its first channel\n" +
      "is read. Image and mask must have the model's size; a colour image needs an RGB model.\n" +
      '\nCost: about steps x resample model evaluations (2,410 with the defaults at T = 1000); lower --steps or\n' +
      '--resample for a quicker, rougher fill. x0 clipping is on.\n' +
      '\nExample:\n  npm run inpaint -- --run-id digits-20250101-120000 --image seven.png --mask hole.png --out filled.png\n',
  );

interface Options {
  runId: string;
  image: string;
  mask: string;
  out?: string;
  store?: string;
  checkpoint?: number;
  steps?: number;
  jumpLength?: number;
  resample?: number;
  seed: number;
  onPool?: boolean;
  pool?: string;
  backend?: Backend;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

function readInput(file: string, what: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${what} ${file}: ${describeError(err)}`);
  }
}

function repaintSettings(o: Options): RePaintSettings {
  return { steps: o.steps, jumpLength: o.jumpLength, resamplings: o.resample };
}

/** Decodes both PNGs against the model, so a wrong size or a broken file is reported before any work. */
function decodeInputs(o: Options, image: Uint8Array, mask: Uint8Array, config: RunConfig) {
  const { imageSize: s, inChannels: c } = config.model;
  const shape = { height: s, width: s, channels: c };
  const model = `the model of run ${o.runId} (preset ${config.preset})`;
  const pixels = decodeModelImage(image, shape, `--image ${o.image}`, model);
  const keep = decodeKeepMask(mask, shape, `--mask ${o.mask}`, model);
  if (keep.every((k) => k === 1)) throw new Error(`--mask ${o.mask} is white everywhere: nothing to fill`);
  return { pixels, keep };
}

function stepProgress(): (done: number, total: number) => void {
  let line: ProgressLine | undefined;
  let finished = false;
  const started = performance.now();
  return (done, total) => {
    if (total <= 0 || finished) return;
    line ??= progressLine('inpaint', total, 0);
    line.update(done, { 'steps/s': done / Math.max((performance.now() - started) / 1000, 1e-9) });
    if (done >= total) {
      finished = true;
      line.stop();
    }
  };
}

async function inpaintHere(o: Options, image: Uint8Array, mask: Uint8Array): Promise<Uint8Array> {
  const store = openStore(absoluteStoreUri(o.store ?? 'runs'));
  const w = await loadSamplingWeights(store, o.runId, o.checkpoint);
  for (const s of w.skipped) log(`checkpoint ${s.step} skipped: ${s.reason}`);
  const { pixels, keep } = decodeInputs(o, image, mask, w.config);
  const sampler = repaintSamplerFor(w.config, repaintSettings(o));
  log(
    `run ${o.runId}: checkpoint ${w.step}; RePaint ${sampler.steps} steps, jump ${sampler.jumpLength}, ` +
      `${sampler.resamplings} resamplings (${sampler.numModelEvaluations} model evaluations)`,
  );
  await initBackend(o.backend ?? 'auto', log);
  const { pixels: out } = await inpaintImages(w.config, w.ema, {
    pixels,
    keep,
    count: 1,
    seed: o.seed,
    repaint: repaintSettings(o),
    onProgress: stepProgress(),
  });
  const { imageSize: s, inChannels: c } = w.config.model;
  return encodeImagePng(out, { height: s, width: s, channels: c });
}

async function inpaintOnPool(o: Options, image: Uint8Array, mask: Uint8Array): Promise<Uint8Array> {
  const session = await openTemporalSession(log);
  try {
    const target = await poolTarget(session, o.runId, { store: o.store, pool: o.pool, backend: o.backend });
    const store = openStore(target.storeUri);
    const { step, config } = await checkpointConfig(store, o.runId, o.checkpoint);
    decodeInputs(o, image, mask, config);
    const repaint = repaintSettings(o);
    repaintSamplerFor(config, repaint);
    // The same request lands in the same folder and workflow: repeating it re-attaches.
    const id = createHash('sha256')
      .update(image)
      .update(mask)
      .update(JSON.stringify({ step, seed: o.seed, repaint }))
      .digest('hex')
      .slice(0, 16);
    const dir = runKeys.inpaint(o.runId, id);
    await store.put(inpaintKeys.image(dir), image);
    await store.put(inpaintKeys.mask(dir), mask);
    const input: InpaintImageInput = {
      runId: o.runId,
      storeUri: target.storeUri,
      step,
      imageKey: inpaintKeys.image(dir),
      maskKey: inpaintKeys.mask(dir),
      outKey: inpaintKeys.result(dir),
      seed: o.seed,
      repaint,
      backend: target.backend,
      pool: target.pool,
    };
    await session.ensureWorker({ backend: target.backend, workers: 1 });
    const workflowId = `${o.runId}-inpaint-${id}`;
    const { handle, attached } = await startOrAttach(
      session.client,
      INPAINT_IMAGE_WORKFLOW,
      workflowId,
      input,
    );
    log(
      `${attached ? 'attached to' : 'started'} ${workflowId} on pool ${target.pool}\n  ${session.whereToSee(workflowId)}`,
    );
    const show = stepProgress();
    let result: InpaintImageResult;
    try {
      result = await resultWithTicks<InpaintImageResult>(handle, async () => {
        const [beat] = pendingHeartbeats<InpaintHeartbeat>(await handle.describe(), 'inpaint');
        if (beat) show(beat.done, beat.total);
      });
    } catch (err) {
      throw new Error(`inpainting failed: ${innermostMessage(err)}`);
    }
    log(
      `checkpoint ${result.step}; RePaint ${result.steps} steps, jump ${result.jumpLength}, ${result.resamplings} ` +
        `resamplings (${result.modelEvaluations} model evaluations, ${result.seconds.toFixed(1)} s)\n` +
        `  ${objectUri(target.storeUri, result.key)}`,
    );
    return store.get(result.key);
  } finally {
    await session.close();
  }
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  if (o.pool !== undefined && !o.onPool) throw new Error('--pool only applies with --on-pool');
  const image = readInput(o.image, '--image');
  const mask = readInput(o.mask, '--mask');
  const png = o.onPool ? await inpaintOnPool(o, image, mask) : await inpaintHere(o, image, mask);
  const out = path.resolve(o.out ?? `${path.basename(o.image, path.extname(o.image))}-inpainted.png`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, png);
  process.stdout.write(`${out}\n`);
});
