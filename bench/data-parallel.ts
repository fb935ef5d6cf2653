/**
 * Data-parallel training throughput for N = 1, 2, ... trainer processes on this machine, each pinned to
 * its own share of the cores (one core each on a 2-core machine), with gradients all-reduced over the
 * coordinator's ring; prints one JSON object with images/s per N and the scaling efficiency.
 *
 *   npm run bench:data-parallel -- [--preset cifar10] [--workers 1,2] [--batch 16] [--steps 3] [--warmup 1]
 *
 * The global batch is the same for every N (each rank takes batch/N of it), so the work per optimizer
 * step is identical and images/s compares directly. Uses synthetic pixels.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import { runCli } from '../common/errors';
import { positiveInt } from '../common/options';
import { slotCpus } from '../infra/local/local-stack';
import { startCoordinatorProcess } from '../coordinator/spawn';
import type { RankJob, RankStep } from './data-parallel-rank';
import { BACKEND_CHOICES } from '../core/backend/names';

const REPO = path.resolve(__dirname, '..');

const program = new Command('bench:data-parallel')
  .description('Measure data-parallel training throughput for several worker counts; prints JSON')
  .option('--preset <name>', 'model preset', 'cifar10')
  .option('--workers <list>', 'worker counts to measure, comma-separated', '1,2')
  .option('--batch <n>', 'global batch per optimizer step (the same for every N)', positiveInt, 16)
  .option('--micro-batch <n>', 'images per forward/backward pass', positiveInt)
  .option('--steps <n>', 'timed optimizer steps per N', positiveInt, 3)
  .option('--warmup <n>', 'untimed steps first (graph build, allocation)', positiveInt, 1)
  .addOption(new Option('--backend <name>', 'TF.js backend').choices(BACKEND_CHOICES).default('tensorflow'))
  .option('--no-pin', 'do not pin each worker to its own cores');

interface Options {
  preset: string;
  workers: string;
  batch: number;
  microBatch?: number;
  steps: number;
  warmup: number;
  backend: RankJob['backend'];
  pin: boolean;
}

interface Proc {
  done: Promise<number | null>;
  out: string[];
  err: string[];
}

function start(args: string[], env: NodeJS.ProcessEnv, cpus: string | null): Proc {
  const argv = [process.execPath, '--import', 'tsx', ...args];
  const [cmd, ...rest] = cpus ? ['taskset', '-c', cpus, ...argv] : argv;
  const child = spawn(cmd, rest, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { out: [], err: [], done: new Promise((r) => child.on('exit', (code) => r(code))) };
  child.stdout.on('data', (b: Buffer) => p.out.push(b.toString()));
  child.stderr.on('data', (b: Buffer) => p.err.push(b.toString()));
  return p;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

runCli(async () => {
  const o = program.parse().opts<Options>();
  const counts = o.workers.split(',').map((w) => positiveInt(w.trim()));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const key = randomBytes(24).toString('hex');
  const coordinator = await startCoordinatorProcess(key);
  coordinator.child.stderr?.pipe(process.stderr);
  const results: Record<string, unknown>[] = [];
  try {
    for (const [i, n] of counts.entries()) {
      log(`N=${n}: ${o.warmup} warm-up + ${o.steps} timed steps of ${o.preset}, global batch ${o.batch}`);
      const procs = Array.from({ length: n }, (_, slot) => {
        const job: RankJob = {
          preset: o.preset,
          batch: o.batch,
          microBatch: o.microBatch,
          steps: o.warmup + o.steps,
          backend: o.backend,
          slot,
          world: n,
          coordinator: coordinator.address,
          key,
          attempt: i + 1,
        };
        // The same share of cores per worker for every N: the per-core scaling question.
        const cpus = o.pin ? slotCpus(slot, Math.max(...counts)) : null;
        return start(
          ['bench/data-parallel-rank.ts', JSON.stringify(job)],
          { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
          cpus,
        );
      });
      const codes = await Promise.all(procs.map((p) => p.done));
      codes.forEach((code, slot) => {
        if (code !== 0)
          throw new Error(`N=${n} rank ${slot} exited ${code}: ${procs[slot].err.join('').slice(-2000)}`);
      });
      const steps = procs.map((p) =>
        p.out
          .join('')
          .split('\n')
          .filter((l) => l.startsWith('STEP '))
          .map((l) => JSON.parse(l.slice(5)) as RankStep)
          .slice(o.warmup),
      );
      // A step ends when the slowest rank has its update: take the max over ranks per step.
      const stepSeconds = steps[0].map((_, k) => Math.max(...steps.map((r) => r[k].seconds)));
      const perStep = median(stepSeconds);
      results.push({
        workers: n,
        imagesPerSec: o.batch / perStep,
        secondsPerStep: perStep,
        stepSeconds,
        computeSecondsPerRank: steps.map((r) => median(r.map((s) => s.computeSeconds))),
        allReduceSecondsPerRank: steps.map((r) => median(r.map((s) => s.allReduceSeconds))),
        waitSecondsPerRank: steps.map((r) => median(r.map((s) => s.waitSeconds))),
        cpus: o.pin ? Array.from({ length: n }, (_, s) => slotCpus(s, Math.max(...counts))) : null,
      });
      log(`N=${n}: ${(o.batch / perStep).toFixed(3)} img/s (${perStep.toFixed(2)} s/step)`);
    }
  } finally {
    coordinator.child.kill('SIGTERM');
  }
  const base = results.find((r) => r.workers === 1)?.imagesPerSec as number | undefined;
  for (const r of results) {
    if (base) r.scalingEfficiency = (r.imagesPerSec as number) / ((r.workers as number) * base);
  }
  process.stdout.write(
    JSON.stringify(
      {
        benchmark: 'data-parallel-training',
        preset: o.preset,
        backend: o.backend,
        globalBatch: o.batch,
        timedSteps: o.steps,
        cores: os.availableParallelism(),
        loadavg: os.loadavg(),
        results,
      },
      null,
      2,
    ) + '\n',
  );
});
