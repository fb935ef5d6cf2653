/**
 * The data-parallel step itself, with real processes on loopback and a real coordinator: the gradient
 * all-reduced over N = 2 and 4 ranks (each on its share of the global batch) equals the whole-batch
 * gradient of one worker within float tolerance, every rank ends with the same parameters, and a repeat
 * with the same N reproduces them bit for bit.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CoordinatorProcess, startCoordinatorProcess } from '../coordinator/spawn';
import { initBackend } from '../core/backend';
import { loadImageDataset } from '../core/data';
import { Trainer } from '../core/train/trainer';
import type { RankJob } from './helpers/dp-step-rank';
import { TrainerProcess, microConfig, sameBits, writeMicroDataset } from './helpers/pipeline';

jest.setTimeout(300_000);

const REPO = resolve(__dirname, '..');
const KEY = randomBytes(24).toString('hex');
const STEPS = 2;
const workdir = mkdtempSync(join(tmpdir(), 'ddpm-dp-step-'));
let dataset: string;
let coordinator: CoordinatorProcess;
let address: string;
let oneWorker: { grads: Float32Array; params: Float32Array };
let attempt = 0;

function node(args: string[], env: Record<string, string> = {}): TrainerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: REPO,
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new TrainerProcess(child);
}

const readF32 = (file: string) => {
  const b = readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

/** Runs one group of `world` rank processes; returns each rank's first reduced gradient and final params. */
async function runGroup(world: number) {
  attempt++;
  const slots = Array.from({ length: world }, (_, k) => k);
  const ranks = slots.map((slot) => {
    const job: RankJob = {
      coordinator: address,
      key: KEY,
      runId: 'dp-step',
      attempt,
      slot,
      slots,
      dataset,
      steps: STEPS,
      out: join(workdir, `n${world}-a${attempt}-s${slot}`),
    };
    return { job, proc: node(['test/helpers/dp-step-rank.ts', JSON.stringify(job)]) };
  });
  const codes = await Promise.all(ranks.map((r) => r.proc.exited()));
  codes.forEach((code, i) => {
    if (code !== 0) throw new Error(`rank ${i} exited ${code}:\n${ranks[i].proc.log}`);
  });
  return ranks.map((r) => ({
    grads: readF32(`${r.job.out}.grads.f32`),
    params: readF32(`${r.job.out}.params.f32`),
  }));
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return diff / scale;
}

beforeAll(async () => {
  dataset = await writeMicroDataset(join(workdir, 'data'));
  coordinator = await startCoordinatorProcess(KEY);
  address = coordinator.address;
  // One worker, whole batch, in this process on the same backend.
  await initBackend('tensorflow');
  let grads: Float32Array | null = null;
  const t = new Trainer({
    config: microConfig(STEPS),
    data: await loadImageDataset(dataset),
    reduce: async (local) => {
      grads ??= local.slice();
      return local;
    },
  });
  while (t.currentStep < STEPS) await t.step();
  oneWorker = { grads: grads!, params: (await t.hostState()).params };
  t.dispose();
});

afterAll(async () => {
  if (coordinator && coordinator.child.exitCode === null) {
    coordinator.child.kill('SIGTERM');
    await once(coordinator.child, 'exit');
  }
  rmSync(workdir, { recursive: true, force: true });
});

test.each([2, 4])(
  'N=%i: the all-reduced gradient equals the whole-batch gradient; ranks agree',
  async (n) => {
    const ranks = await runGroup(n);
    for (const r of ranks.slice(1)) {
      expect(sameBits(r.grads, ranks[0].grads)).toBe(true);
      expect(sameBits(r.params, ranks[0].params)).toBe(true);
    }
    const gradErr = maxRelDiff(ranks[0].grads, oneWorker.grads);
    const paramErr = maxRelDiff(ranks[0].params, oneWorker.params);
    console.log(
      `N=${n}: gradient max rel diff ${gradErr.toExponential(2)}, params after ${STEPS} steps ${paramErr.toExponential(2)}`,
    );
    expect(gradErr).toBeLessThan(1e-5);
    expect(paramErr).toBeLessThan(1e-5);
  },
);

test('a repeated N=2 group reproduces the same bits', async () => {
  const [a, b] = [await runGroup(2), await runGroup(2)];
  expect(sameBits(a[0].grads, b[0].grads)).toBe(true);
  expect(sameBits(a[0].params, b[0].params)).toBe(true);
});
