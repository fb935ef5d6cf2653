import { Command, Option } from 'commander';
import { defaultCheckpointEvery } from '../core/train/checkpoint-schedule';
import { initBackend } from '../core/backend';
import { BACKEND_CHOICES, type BackendChoice } from '../core/backend/names';
import { presetNames } from '../core/presets';
import { defaultMicroBatchSize } from '../core/train/micro-batch';
import { openStore } from '../store';
import { findDefaultDataset } from './default-dataset';
import { runCli } from '../common/errors';
import { runLocal } from './local-run';
import {
  ConfigOverrides,
  addConfigOverrideOptions,
  defaultRunId,
  positiveInt,
  resolveRunConfig,
} from '../common/options';
import { runIdOption } from './run-input';

const program = addConfigOverrideOptions(
  new Command('train')
    .description(
      'Train a DDPM in this one process, without Temporal: loads the dataset, resumes the run from its newest valid checkpoint if it ' +
        'has one, and writes checkpoints, sample grids and metrics under <store>/<run-id>/.',
    )
    .addOption(
      new Option('--preset <name>', 'model and training preset').choices(presetNames()).makeOptionMandatory(),
    )
    .option(
      '--dataset <path>',
      'CIFAR-10 binary dir or .tar.gz, MNIST IDX file/dir, a directory of PNGs, or embedded:mnist-digits ' +
        '(default: looked up and downloaded as start-run does)',
    )
    .option('--store <uri>', 'where run artifacts go: a directory or s3://bucket/prefix', 'runs')
    .option('--run-id <id>', 'run to start or resume (default: <preset>-<timestamp>)', runIdOption)
    .addOption(new Option('--backend <name>', 'TF.js backend').choices(BACKEND_CHOICES).default('auto')),
)
  .option(
    '--checkpoint-every <n>',
    'steps between checkpoints (default: a tenth of the run, at most 5000)',
    positiveInt,
  )
  .option('--sample-every <n>', 'steps between EMA sample grids (default: as checkpoints)', positiveInt)
  .option('--samples <n>', 'images per sample grid', positiveInt, 64)
  .option('--keep <n>', 'checkpoints to keep (older ones are deleted; latest never)', positiveInt, 3)
  .addHelpText(
    'after',
    '\nExample:\n  npm run train -- --preset tiny --dataset ../shared/data/cifar-10-batches-bin --steps 300\n',
  );

interface Options extends ConfigOverrides {
  preset: string;
  dataset?: string;
  store: string;
  runId?: string;
  backend: BackendChoice;
  checkpointEvery?: number;
  sampleEvery?: number;
  samples: number;
  keep: number;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const runId = o.runId ?? defaultRunId(o.preset);
  const config = resolveRunConfig(o.preset, o);
  // Before the backend loads, so a missing dataset or a failed download is reported at once.
  const dataset = o.dataset ?? (await findDefaultDataset(config));
  const backend = await initBackend(o.backend, log);
  const microBatchSize = o.microBatch ?? defaultMicroBatchSize(backend.name, config);
  const checkpointEvery = o.checkpointEvery ?? defaultCheckpointEvery(config.train.totalSteps);
  const store = openStore(o.store);
  log(
    `run ${runId}: preset ${config.preset}, ${config.train.totalSteps} steps, batch ${config.train.batchSize}, store ${store.uri}`,
  );
  await runLocal({
    config,
    runId,
    dataset,
    store,
    microBatchSize,
    checkpointEvery,
    sampleEvery: o.sampleEvery ?? checkpointEvery,
    sampleCount: o.samples,
    keepCheckpoints: o.keep,
    log,
  });
});
