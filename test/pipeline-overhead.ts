/**
 * Orchestration overhead of a training run on a real local Temporal dev server and trainer process,
 * printed as JSON: per segment, the seconds spent training, the seconds the activity spent on anything
 * else (loading data and state, committing the checkpoint), and the scheduling gap between one segment's
 * completion and the next one's start (from the workflow history). Optionally kills the trainer once
 * mid-run and reports how long until a replacement resumed training.
 *
 *   npx tsx test/pipeline-overhead.ts [--preset tiny] [--steps 120] [--checkpoint-every 40] [--kill]
 */
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { runCli } from '../common/errors';
import { positiveInt, resolveRunConfig } from '../common/options';
import { presetNames } from '../core/presets';
import { LocalDirStore } from '../store';
import { PipelineHarness, microConfig, sleep, writeMicroDataset } from './helpers/pipeline';

const program = new Command('pipeline-overhead')
  .addOption(
    new Option('--preset <name>', 'preset, or test-micro (8x8 images)')
      .choices([...presetNames(), 'test-micro'])
      .default('test-micro'),
  )
  .option('--dataset <path>', 'dataset (default: generated 8x8 PNGs, only for test-micro)')
  .option('--steps <n>', 'total steps', positiveInt, 120)
  .option('--checkpoint-every <n>', 'steps per segment', positiveInt, 40)
  .option('--heartbeat-timeout <s>', 'heartbeat timeout in seconds', positiveInt, 5)
  .option('--kill', 'SIGKILL the trainer once, mid-run, and time the recovery');

interface Options {
  preset: string;
  dataset?: string;
  steps: number;
  checkpointEvery: number;
  heartbeatTimeout: number;
  kill?: boolean;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  const h = await PipelineHarness.start();
  try {
    const config =
      o.preset === 'test-micro' ? microConfig(o.steps) : resolveRunConfig(o.preset, { steps: o.steps });
    const dataset = o.dataset ?? (await writeMicroDataset(join(h.workdir, 'data')));
    const storeDir = join(h.workdir, 'store');
    const trainer = h.spawnTrainer();
    await trainer.ready();
    const input = h.input('overhead', storeDir, dataset, config, o.checkpointEvery);
    input.timeouts.heartbeatSeconds = o.heartbeatTimeout;
    const handle = await h.startRun(input);
    let recoverySeconds: number | null = null;
    if (o.kill) {
      const store = new LocalDirStore(storeDir);
      const first = `overhead/checkpoints/${String(o.checkpointEvery).padStart(9, '0')}/manifest.json`;
      await h.waitFor('the first checkpoint', () => store.exists(first), 600_000);
      await sleep(1000);
      await trainer.kill('SIGKILL');
      const killedAt = Date.now();
      const replacement = h.spawnTrainer();
      await h.waitFor(
        'the replacement to resume',
        async () => replacement.log.includes('resuming from'),
        600_000,
      );
      recoverySeconds = (Date.now() - killedAt) / 1000;
    }
    await handle.result();

    const segments: { train: number; inActivityOverhead: number; gapBefore: number | null }[] = [];
    let lastCompleted: number | null = null;
    const started = new Map<string, number>();
    for (const e of (await handle.fetchHistory()).events ?? []) {
      const at = Number(e.eventTime?.seconds ?? 0) + (e.eventTime?.nanos ?? 0) / 1e9;
      if (e.activityTaskScheduledEventAttributes?.activityType?.name === 'trainSegment')
        started.set(String(e.eventId), at);
      if (
        e.activityTaskStartedEventAttributes &&
        started.has(String(e.activityTaskStartedEventAttributes.scheduledEventId))
      ) {
        segments.push({
          train: 0,
          inActivityOverhead: 0,
          gapBefore: lastCompleted === null ? null : at - lastCompleted,
        });
      }
      const done = e.activityTaskCompletedEventAttributes;
      if (done && started.has(String(done.scheduledEventId))) {
        const payload = done.result?.payloads?.[0]?.data;
        const r = JSON.parse(Buffer.from(payload as Uint8Array).toString('utf8'));
        Object.assign(segments[segments.length - 1], {
          train: r.trainSeconds,
          inActivityOverhead: r.overheadSeconds,
        });
        lastCompleted = at;
      }
    }
    const completed = segments.filter((s) => s.train > 0);
    const sum = (f: (s: (typeof segments)[number]) => number) => completed.reduce((a, s) => a + f(s), 0);
    const gaps = completed.filter((s) => s.gapBefore !== null);
    const meanGap = gaps.reduce((a, s) => a + (s.gapBefore as number), 0) / Math.max(gaps.length, 1);
    const meanTrain = sum((s) => s.train) / completed.length;
    const meanOverhead = sum((s) => s.inActivityOverhead) / completed.length;
    process.stdout.write(
      `${JSON.stringify(
        {
          preset: config.preset,
          steps: o.steps,
          stepsPerSegment: o.checkpointEvery,
          segments: completed.length,
          meanTrainSecondsPerSegment: Number(meanTrain.toFixed(3)),
          meanInActivityOverheadSeconds: Number(meanOverhead.toFixed(3)),
          meanSchedulingGapSeconds: Number(meanGap.toFixed(3)),
          overheadFraction: Number(((meanOverhead + meanGap) / meanTrain).toFixed(4)),
          heartbeatTimeoutSeconds: o.heartbeatTimeout,
          killToResumedSeconds: recoverySeconds,
          perSegment: segments,
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await h.stop();
  }
});
