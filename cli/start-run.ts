/**
 * Starts a training run on Temporal (or re-attaches to it) and shows its progress.
 *
 *   npm run start-run                     # the default: digits preset on the embedded MNIST digits
 *   npm run start-run -- --preset cifar10 [--dataset PATH|s3://...] [--store DIR|s3://...] [--run-id ID]
 */
import path from 'node:path';
import { defaultCheckpointEvery } from '../core/train/checkpoint-schedule';
import { BACKEND_CHOICES } from '../core/backend/names';
import { Command, Option } from 'commander';
import { isS3Uri } from '../store';
import { DEFAULT_PRESET, presetNames } from '../core/presets';
import { TRAINER_TASK_QUEUE, TrainingRunInput, TrainingRunResult } from '../workflows/api';
import { findDefaultDataset } from './default-dataset';
import { checkDatasetFits, checkS3Dataset, checkS3Store } from './preflight';
import { UsageError, runCli } from '../common/errors';
import {
  ConfigOverrides,
  addConfigOverrideOptions,
  defaultRunId,
  nonNegativeInt,
  positiveInt,
  positiveNumber,
  resolveRunConfig,
} from '../common/options';
import { describeRun, startRunExecution, stateName, withStoreResumePoint } from './run-executions';
import { absoluteDatasetSource, absoluteStoreUri, parseRunInput, runIdOption } from './run-input';
import { completedRunLines } from './run-report';
import { openTemporalSession, workerNeedsOf } from './temporal-session';
import { localCoordinatorAddress, localStackSettings } from '../infra/local/local-stack';
import { temporalSettings } from '../workers/temporal-config';
import { watchRun } from './watch-run';

const program = addConfigOverrideOptions(
  new Command('start-run')
    .description(
      'Start a DDPM training run on Temporal, or re-attach to it, and show its progress. With no Temporal address ' +
        'configured (TEMPORAL_ADDRESS / profile), it first brings up the local stack: a Temporal dev server and a ' +
        'trainer worker, both left running in the background. Ctrl-C stops watching; the run carries on.',
    )
    .addOption(
      new Option('--preset <name>', 'model and training preset')
        .choices(presetNames())
        .default(DEFAULT_PRESET),
    )
    .option(
      '--dataset <path>',
      'CIFAR-10 binary dir or .tar.gz, MNIST IDX dir, PNG dir, s3://bucket/key, or embedded:mnist-digits ' +
        "(default: the digits preset's embedded digits; others are looked up in $DDPM_DATA_DIR, ./data, " +
        '../shared/data, and cifar10 / mnist are downloaded into the dataset cache when not found)',
    )
    .option(
      '--store <uri>',
      'where run artifacts go: a directory (made absolute) or s3://bucket/prefix',
      'runs',
    )
    .option('--run-id <id>', 'run to start or re-attach to (default: <preset>-<timestamp>)', runIdOption)
    .addOption(
      new Option('--backend <name>', 'TF.js backend of the trainers')
        .choices(BACKEND_CHOICES)
        .default('auto'),
    ),
)
  .option(
    '--checkpoint-every <n>',
    'steps between checkpoints (default: a tenth of the run, at most 5000)',
    positiveInt,
  )
  .option(
    '--sample-every <n>',
    'steps between EMA sample grids (default: half the run, a multiple of --checkpoint-every)',
    positiveInt,
  )
  .option('--samples <n>', 'images per sample grid', positiveInt, 64)
  .option('--sample-steps <n>', 'DDIM steps for the sample grids', positiveInt, 50)
  .option('--keep <n>', 'checkpoints to keep (older ones are deleted; latest never)', positiveInt, 3)
  .option(
    '--heartbeat-timeout <seconds>',
    'a trainer silent this long is presumed dead and its segment retried (must exceed the slowest micro-batch)',
    positiveInt,
    120,
  )
  .option('--segment-hours <h>', 'upper bound for one training segment', positiveNumber, 24)
  .option(
    '--workers <n>',
    'data-parallel trainers (one per GPU, or per core set on CPU); the global batch is split across them',
    positiveInt,
    1,
  )
  .option('--min-workers <n>', 'keep training after losses with at least this many (default 1)', positiveInt)
  .option(
    '--coordinator <host:port>',
    'the data-parallel coordinator (default: the local stack starts one on 127.0.0.1:7077)',
  )
  .option(
    '--rendezvous-timeout <seconds>',
    'how long each segment waits for trainer slots that have not joined before going on without them',
    positiveInt,
    60,
  )
  .option(
    '--peer-timeout <seconds>',
    'an all-reduce waits this long for a slower trainer before restarting the segment without it',
    positiveInt,
    1800,
  )
  .addOption(
    new Option('--wire <format>', 'gradient transfer precision').choices(['fp32', 'bf16']).default('fp32'),
  )
  .option(
    '--pool <name>',
    "trainer pool (clusters): its shared queue and the prefix of its slots' queues (worker --task-queue)",
    TRAINER_TASK_QUEUE,
  )
  .option(
    '--evaluate-every <n>',
    'steps between in-run evaluations (bits/dim, classifier score; FID with --extractor), plus one at the end ' +
      '(default: half the run; 0: none)',
    nonNegativeInt,
  )
  .option('--eval-samples <n>', 'generated images per in-run evaluation (classifier score, FID)', positiveInt)
  .option(
    '--extractor <uri>',
    'TF.js Inception-v3 feature network (model.json path or s3:// URI every trainer can read): adds FID/KID',
  )
  .option('--detach', 'start (or find) the run and return at once, without watching')
  .addHelpText(
    'after',
    `
Examples:
  npm run start-run                                   # digits preset on the embedded MNIST digits
  npm run start-run -- --preset cifar10 --dataset ./data/cifar-10-batches-bin
  npm run start-run -- --preset tiny --steps 300 --run-id smoke --detach
  npm run start-run -- --preset cifar10 --run-id cifar10-20250101-120000   # re-attach

Environment:
  TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE
                           use this Temporal service instead of the local stack
  DDPM_LOCAL_TEMPORAL_PORT, DDPM_LOCAL_UI_PORT, DDPM_LOCAL_STACK_DIR
                           local stack ports (7233, 8233) and state dir (.cache/local-stack)
  AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...   for s3:// stores and datasets
  DDPM_LOCAL_COORDINATOR_PORT   local coordinator port (7077) for --workers > 1
  DDPM_DATA_DIR            datasets: looked in first, and where downloads go (default ~/.cache/ddpm-temporal/datasets)
  DDPM_CIFAR10_URL, DDPM_MNIST_BASE_URL   download mirrors (docs/cli.md)

Data parallelism (--workers N): locally, start-run starts a coordinator and N trainers, one per core
set (or GPU); on a cluster, run 'npm run coordinator' once and 'npm run worker -- --slot k' per GPU, all
with the same DDPM_COORDINATOR_KEY, and pass --coordinator host:port.
`,
  );

interface Options extends ConfigOverrides {
  preset: string;
  dataset?: string;
  store: string;
  runId?: string;
  backend: TrainingRunInput['backend'];
  checkpointEvery?: number;
  sampleEvery?: number;
  samples: number;
  sampleSteps: number;
  keep: number;
  heartbeatTimeout: number;
  segmentHours: number;
  detach?: boolean;
  workers: number;
  minWorkers?: number;
  coordinator?: string;
  rendezvousTimeout: number;
  peerTimeout: number;
  wire: 'fp32' | 'bf16';
  pool: string;
  evaluateEvery?: number;
  evalSamples?: number;
  extractor?: string;
}

/** The run's evaluation plan: only what the command line changes (the workflow fills in the defaults). */
function evaluationFrom(o: Options): TrainingRunInput['evaluation'] {
  const plan: NonNullable<TrainingRunInput['evaluation']> = {
    ...(o.evaluateEvery !== undefined && { every: o.evaluateEvery }),
    ...(o.evalSamples !== undefined && { samples: o.evalSamples }),
    ...(o.extractor !== undefined && {
      metrics: ['bpd', 'score', 'fid'],
      extractor: { uri: isS3Uri(o.extractor) ? o.extractor : path.resolve(o.extractor) },
    }),
  };
  return Object.keys(plan).length > 0 ? plan : undefined;
}

/** Data-parallel settings, or none for a single trainer. */
function parallelFrom(o: Options, localCoordinator: string | null): TrainingRunInput['parallel'] {
  if (o.workers === 1) {
    if (o.minWorkers !== undefined && o.minWorkers > 1)
      throw new UsageError('--min-workers exceeds --workers (1)');
    return undefined;
  }
  if (localCoordinator && o.pool !== TRAINER_TASK_QUEUE) {
    throw new UsageError(`--pool is for clusters; the local stack's trainers poll '${TRAINER_TASK_QUEUE}'`);
  }
  const coordinator = o.coordinator ?? localCoordinator;
  if (!coordinator) {
    throw new UsageError(
      '--workers > 1 on a configured Temporal service needs --coordinator host:port (see infra/README.md)',
    );
  }
  return {
    workers: o.workers,
    minWorkers: o.minWorkers ?? 1,
    pool: o.pool,
    coordinator,
    rendezvousSeconds: o.rendezvousTimeout,
    peerTimeoutSeconds: o.peerTimeout,
    wire: o.wire,
  };
}

/** The whole workflow input from the command line, validated before anything starts. */
async function runInputFrom(o: Options, localCoordinator: string | null): Promise<TrainingRunInput> {
  const config = resolveRunConfig(o.preset, o);
  let dataset = o.dataset ?? (await findDefaultDataset(config));
  const storeUri = absoluteStoreUri(o.store);
  const runId = o.runId ?? defaultRunId(o.preset);
  // What can be checked before the run starts is checked here (cli/preflight.ts), not found by a worker.
  if (isS3Uri(dataset)) {
    await checkS3Dataset(dataset);
  } else {
    dataset = absoluteDatasetSource(dataset);
    await checkDatasetFits(dataset, config);
  }
  if (isS3Uri(storeUri)) await checkS3Store(storeUri, runId);
  const checkpointEvery = o.checkpointEvery ?? defaultCheckpointEvery(config.train.totalSteps);
  return parseRunInput({
    runId,
    storeUri,
    dataset,
    config,
    schedule: {
      checkpointEvery,
      // A 64-image DDIM-50 grid costs as much as ~1,000 training images: two grids per run (half-way
      // and at the end) keep the default digits run's grids near 10% of its time.
      sampleEvery:
        o.sampleEvery ??
        checkpointEvery * Math.max(1, Math.round(config.train.totalSteps / 2 / checkpointEvery)),
      sampleCount: o.samples,
      sampleSteps: o.sampleSteps,
      keepCheckpoints: o.keep,
    },
    timeouts: { heartbeatSeconds: o.heartbeatTimeout, segmentHours: o.segmentHours },
    backend: o.backend,
    ...(o.microBatch !== undefined ? { microBatchSize: o.microBatch } : {}),
    ...(o.workers > 1 && { parallel: parallelFrom(o, localCoordinator) }),
    ...(evaluationFrom(o) && { evaluation: evaluationFrom(o) }),
  });
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const say = (line: string) => process.stdout.write(`${line}\n`);
  // Validate everything before any service starts; the local stack's coordinator address is known upfront.
  const localCoordinator = temporalSettings().configured
    ? null
    : localCoordinatorAddress(localStackSettings());
  let input = await runInputFrom(o, localCoordinator);
  const { runId } = input;

  const session = await openTemporalSession(log);
  const existing = await describeRun(session.client, runId);
  const state = existing ? stateName(existing) : 'none';
  // A run keeps the store it started with, whatever --store says now.
  const storeUri = (existing?.memo?.store as string | undefined) ?? input.storeUri;
  if (state === 'completed') {
    const result = (await session.client.workflow.getHandle(runId).result()) as TrainingRunResult;
    for (const line of await completedRunLines(session.client, result, storeUri)) say(line);
    return;
  }
  const needs = workerNeedsOf(input);
  await session.ensureWorker(needs);
  if (state === 'running') {
    log(`run ${runId} is already running: re-attaching (the options given now do not change it)`);
  } else {
    if (state !== 'none') {
      log(`run ${runId} ended ${state}; starting it again from its newest checkpoint`);
      input = await withStoreResumePoint(input, log);
    }
    const started = await startRunExecution(session.client, input);
    log(
      started === 'started'
        ? `started run ${runId}`
        : `run ${runId} was just started elsewhere: re-attaching`,
    );
  }
  say(`run: ${runId}`);
  say(`view: ${session.whereToSee(runId)}`);
  if (o.detach) {
    say(`follow it with: npm run status -- --run-id ${runId} --watch`);
    return;
  }

  const outcome = await watchRun(session.client, runId, {
    log,
    keepWorker: () => session.ensureWorker(needs, { recheck: true }),
  });
  if (outcome.state === 'detached') {
    say(`detached: run ${runId} keeps running. Watch it again with:`);
    say(`  npm run status -- --run-id ${runId} --watch`);
    say(
      `  npm run start-run -- --preset ${input.config.preset} --dataset ${input.dataset} --run-id ${runId}`,
    );
    return;
  }
  if (outcome.state !== 'completed') {
    throw new Error(`run ${runId} ${outcome.state}: ${outcome.message}`);
  }
  for (const line of await completedRunLines(session.client, outcome.result, storeUri)) say(line);
});
