/**
 * Samples a PNG grid from a run's newest valid checkpoint (EMA weights), in this process: no Temporal,
 * no worker.
 *
 *   npm run sample -- --run-id ID [--store DIR|s3://...] [--sampler ddim|ancestral] [--steps N] [--count N]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { encodePngGrid } from '../core/data';
import { Purpose, hashKey } from '../core/rng';
import { generateImages } from '../core/sampling';
import { openStore } from '../store';
import { runCli } from './errors';
import { nonNegativeInt, positiveInt } from './options';
import { ProgressLine, progressLine } from './progress';
import { BACKENDS, absoluteStoreUri, runIdOption } from './run-input';

const program = new Command('sample')
  .description(
    "Generate images from a run's newest valid checkpoint (its EMA weights) and write them as one PNG grid. " +
      'Runs locally; the run may be in progress, finished or stopped.',
  )
  .requiredOption('--run-id <id>', 'the run whose checkpoints to use', runIdOption)
  .option('--store <uri>', "the run's store: a directory or s3://bucket/prefix", 'runs')
  .option('--step <n>', 'use the checkpoint of this step instead of the newest', nonNegativeInt)
  .addOption(
    new Option('--sampler <kind>', "'ddim' (few steps) or 'ancestral' (the paper's, one per timestep)")
      .choices(['ddim', 'ancestral'])
      .default('ddim'),
  )
  .option('--steps <n>', 'DDIM steps (ignored by ancestral)', positiveInt, 50)
  .option('--count <n>', 'images in the grid', positiveInt, 64)
  .option(
    '--seed <n>',
    "noise seed (default: the run's own sampling seed, as in its periodic grids)",
    nonNegativeInt,
  )
  .addOption(new Option('--backend <name>', 'TF.js backend').choices(BACKENDS).default('auto'))
  .option('--out <file>', 'PNG to write (default: ./<run-id>-step<N>.png)')
  .addHelpText(
    'after',
    '\nExample:\n  npm run sample -- --run-id cifar10-20250101-120000 --count 16 --out samples.png\n',
  );

interface Options {
  runId: string;
  store: string;
  step?: number;
  sampler: 'ddim' | 'ancestral';
  steps: number;
  count: number;
  seed?: number;
  backend: (typeof BACKENDS)[number];
  out?: string;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const store = openStore(absoluteStoreUri(o.store));
  const repo = new CheckpointRepository(store, o.runId);
  let loaded;
  if (o.step !== undefined) {
    loaded = await repo.load(o.step);
  } else {
    const newest = await repo.newestValid();
    for (const s of newest?.skipped ?? []) log(`checkpoint ${s.step} skipped: ${s.reason}`);
    if (!newest) throw new Error(`run ${o.runId} has no valid checkpoint in ${store.uri}`);
    loaded = newest.checkpoint;
  }
  const { state, config } = loaded;
  log(`run ${o.runId}: checkpoint of step ${state.step} (preset ${config.preset})`);
  await initBackend(o.backend, log);
  let progress: ProgressLine | undefined;
  const pixels = await generateImages(config, state.ema, {
    count: o.count,
    seed: o.seed ?? hashKey([config.train.seed, Purpose.Sampling]),
    sampler: { kind: o.sampler, steps: o.steps },
    onProgress: (done, total) => {
      progress ??= progressLine('sample', total, 0);
      progress.update(done, { sampler: o.sampler });
    },
  });
  progress?.stop();
  const { imageSize: s, inChannels: c } = config.model;
  const out = path.resolve(o.out ?? `${o.runId}-step${state.step}.png`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, encodePngGrid(pixels, o.count, s, s, c));
  process.stdout.write(`${out}\n`);
});
