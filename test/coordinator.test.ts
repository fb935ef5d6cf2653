/**
 * The coordinator and the ring all-reduce, end to end on loopback: a real coordinator process, real
 * worker processes (test/helpers/coordinator-worker.ts) that are killed or frozen mid-reduce, and a few
 * in-process joins for the rendezvous rules.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CoordinatorError, type JoinOptions, type JoinResult } from '../coordinator/api';
import { joinGroup } from '../coordinator/client';
import { startCoordinatorProcess, type CoordinatorProcess } from '../coordinator/spawn';
import { reduceInput, referenceSum } from './helpers/coordinator-data';
import type { WorkerJob, WorkerReport } from './helpers/coordinator-worker';

const REPO = resolve(__dirname, '..');
const KEY = randomBytes(16).toString('hex');
const SEED = 7;

jest.setTimeout(60_000);

const startCoordinator = () => startCoordinatorProcess(KEY);

interface WorkerResult {
  report: WorkerReport | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  child: ChildProcess;
}

const children = new Set<ChildProcess>();

function startWorker(job: WorkerJob, hangLimitMs = 45_000): Promise<WorkerResult> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/helpers/coordinator-worker.ts', JSON.stringify(job)],
    {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // A hung worker is a failure of the thing under test; kill it so the test reports instead of hanging.
  const timer = setTimeout(() => child.kill('SIGKILL'), hangLimitMs);
  return new Promise((resolvePromise) => {
    child.once('exit', (_code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const line = out.trim().split('\n').pop();
      const report = line ? (JSON.parse(line) as WorkerReport) : null;
      resolvePromise({ report, signal, stderr: err, child });
    });
  });
}

let coordinator: CoordinatorProcess;
let outRoot: string;
let runCounter = 0;

beforeAll(async () => {
  outRoot = mkdtempSync(join(tmpdir(), 'ddpm-coordinator-'));
  coordinator = await startCoordinator();
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  if (coordinator) await stop(coordinator.child);
  rmSync(outRoot, { recursive: true, force: true });
});

/** SIGTERM, and the exit code; SIGKILL if it does not go within 5 s (the caller's assertion fails). */
function stop(child: ChildProcess): Promise<number | string | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolvePromise(code ?? signal);
    });
    child.kill('SIGTERM');
  });
}

function baseJob(slot: number, slots: number[], extra: Partial<WorkerJob> = {}): WorkerJob {
  return {
    address: coordinator.address,
    key: KEY,
    runId: `run-${process.pid}-${runCounter}`,
    attempt: 1,
    slot,
    expectedSlots: slots,
    seed: SEED,
    lengths: [1000],
    ...extra,
  };
}

/** Runs one group to completion: every slot in its own process. */
async function runGroup(
  slots: number[],
  extra: (slot: number) => Partial<WorkerJob> = () => ({}),
): Promise<WorkerResult[]> {
  runCounter++;
  return Promise.all(slots.map((s) => startWorker(baseJob(s, slots, extra(s)))));
}

function readResult(dir: string, slot: number, length: number, rep: number): Float32Array {
  const b = readFileSync(join(dir, `slot${slot}-len${length}-rep${rep}.f32`));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer).equals(Buffer.from(b.buffer));
}

/** Largest error relative to what rounding in the sum can cause: scale = sum of |x| over the slots. */
function worstError(got: Float32Array, slots: number[], length: number): number {
  const ref = referenceSum(SEED, slots, length);
  const scale = new Float64Array(length);
  for (const s of slots) reduceInput(SEED, s, length).forEach((x, i) => (scale[i] += Math.abs(x)));
  let worst = 0;
  for (let i = 0; i < length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / (scale[i] || 1));
  return worst;
}

function inProcessJoin(slot: number, slots: number[], runId: string, extra: Partial<JoinOptions> = {}) {
  return joinGroup({
    address: coordinator.address,
    clusterKey: KEY,
    runId,
    execution: 'e1',
    attempt: 1,
    slot,
    expectedSlots: slots,
    minWorkers: slots.length,
    rendezvousSeconds: 20,
    startStep: 0,
    livenessSeconds: 10,
    peerTimeoutSeconds: 20,
    ...extra,
  });
}

async function closeAll(results: PromiseSettledResult<JoinResult>[]): Promise<void> {
  for (const r of results) if (r.status === 'fulfilled' && r.value.admitted) await r.value.group.close();
}

function kindOf(r: PromiseSettledResult<unknown>): string {
  if (r.status === 'fulfilled') return 'fulfilled';
  return r.reason instanceof CoordinatorError ? r.reason.kind : String(r.reason);
}

const LENGTHS = [262_147, 7, 2, 1, 0];

describe.each([2, 3, 4])('ring all-reduce with %i workers', (world) => {
  test('sums exactly, identically on every rank, bit-identically across repeats', async () => {
    const slots = Array.from({ length: world }, (_, i) => i * 2 + 1);
    const dir = mkdtempSync(join(outRoot, `n${world}-`));
    const results = await runGroup(slots, (s) => ({
      lengths: LENGTHS,
      repeats: 2,
      outDir: dir,
      // One rank reports a slow compute phase: the coordinator must log it as a straggler.
      computeSeconds: world === 3 && s === slots[2] ? 4 : 0.01,
    }));
    for (const r of results)
      expect(r.report).toMatchObject({ admitted: true, reductions: LENGTHS.length * 2 });
    expect(results.map((r) => r.report!.rank)).toEqual(slots.map((_, i) => i));
    for (const length of LENGTHS) {
      const first = readResult(dir, slots[0], length, 0);
      expect(first.length).toBe(length);
      for (const s of slots)
        for (const rep of [0, 1]) expect(sameBits(readResult(dir, s, length, rep), first)).toBe(true);
      // fp32 summation in a fixed order: a few ulps of the operands' magnitude at most.
      expect(worstError(first, slots, length)).toBeLessThan(world * 2 ** -23);
    }
    if (world === 3)
      expect(coordinator.stderr()).toMatch(
        new RegExp(`straggler: .*step 0: slot ${slots[2]} computed 4\\.00 s`),
      );
  });
});

test('a second group of the same size reproduces the first bit for bit', async () => {
  const slots = [0, 1, 2];
  const dirs = [mkdtempSync(join(outRoot, 'again-a-')), mkdtempSync(join(outRoot, 'again-b-'))];
  for (const dir of dirs) await runGroup(slots, () => ({ lengths: [100_003], outDir: dir }));
  for (const s of slots)
    expect(sameBits(readResult(dirs[0], s, 100_003, 0), readResult(dirs[1], s, 100_003, 0))).toBe(true);
});

test('bf16 on the wire: every rank identical, bf16-exact, close to the fp32 sum', async () => {
  const slots = [0, 1, 2];
  const dir = mkdtempSync(join(outRoot, 'bf16-'));
  const length = 100_003;
  const results = await runGroup(slots, () => ({
    lengths: [length, 5],
    repeats: 2,
    outDir: dir,
    wire: 'bf16',
  }));
  for (const r of results) expect(r.report).toMatchObject({ admitted: true, reductions: 4 });
  const first = readResult(dir, 0, length, 0);
  for (const s of slots)
    for (const rep of [0, 1]) expect(sameBits(readResult(dir, s, length, rep), first)).toBe(true);
  const bits = new Uint32Array(first.buffer);
  expect(bits.every((b) => (b & 0xffff) === 0)).toBe(true);
  // bf16 keeps 8 significant bits; partial sums are rounded N - 1 times plus the owner's final rounding.
  expect(worstError(first, slots, length)).toBeLessThan(2 ** -6);
  expect(worstError(first, slots, length)).toBeGreaterThan(0);
});

test('a wrong key, a missing proof and garbage are refused without disturbing the group', async () => {
  runCounter++;
  const slots = [0, 1];
  const job = (s: number) => baseJob(s, slots, { lengths: [50_001] });
  const runId = job(0).runId;
  const first = startWorker(job(0));
  await waitFor(() => coordinator.stderr().includes(`run ${runId} execution test attempt 1: slot 0 joined`));

  // Same run, same attempt, the missing slot: with the wrong key...
  const wrongKey = await joinGroup({ ...joinOptions(runId, 1, slots), clusterKey: 'not-the-key' }).catch(
    (e) => e,
  );
  expect(wrongKey).toBeInstanceOf(CoordinatorError);
  expect(wrongKey.kind).toBe('refused');
  expect(wrongKey.message).toMatch(/wrong proof/);
  // ...with no proof at all, and with a line that is not a message.
  const {
    clusterKey: _key,
    address: _address,
    peerTimeoutSeconds: _p,
    ...fields
  } = joinOptions(runId, 1, slots);
  const unproven = { type: 'join', version: 1, ...fields, dataAddress: '127.0.0.1:9', wire: 'fp32' };
  expect(await rawExchange(`${JSON.stringify(unproven)}\n`)).toMatch(/"refused".*proof/);
  expect(await rawExchange('hello\n')).toMatch(/"refused".*not JSON/);

  const second = startWorker(job(1));
  const results = await Promise.all([first, second]);
  for (const r of results) expect(r.report).toMatchObject({ admitted: true, reductions: 1 });
});

test('too few workers in the rendezvous window: every joiner gets not-enough-workers', async () => {
  const started = Date.now();
  const r = await Promise.allSettled([
    inProcessJoin(0, [0, 1, 2], 'few', { minWorkers: 3, rendezvousSeconds: 1 }),
    inProcessJoin(1, [0, 1, 2], 'few', { minWorkers: 3, rendezvousSeconds: 1 }),
  ]);
  expect(r.map(kindOf)).toEqual(['not-enough-workers', 'not-enough-workers']);
  expect(Date.now() - started).toBeGreaterThanOrEqual(900);
});

test('members resuming from different steps all get start-step-mismatch', async () => {
  const r = await Promise.allSettled([
    inProcessJoin(0, [0, 1], 'steps', { startStep: 100 }),
    inProcessJoin(1, [0, 1], 'steps', { startStep: 200 }),
  ]);
  expect(r.map(kindOf)).toEqual(['start-step-mismatch', 'start-step-mismatch']);
});

test('a duplicate slot is refused; a join after the rendezvous closed is not admitted', async () => {
  const slots = [0, 1, 2];
  const opts = { minWorkers: 2, rendezvousSeconds: 1 };
  const a = inProcessJoin(0, slots, 'late', opts);
  await new Promise((r) => setTimeout(r, 200));
  const dup = await inProcessJoin(0, slots, 'late', opts).catch((e) => e);
  expect(dup.kind).toBe('refused');
  expect(dup.message).toMatch(/slot 0 already joined/);
  const joined = await Promise.allSettled([a, inProcessJoin(1, slots, 'late', opts)]);
  expect(joined.map((r) => r.status === 'fulfilled' && r.value.admitted)).toEqual([true, true]);
  const late = await inProcessJoin(2, slots, 'late', opts);
  expect(late.admitted).toBe(false);
  expect(!late.admitted && late.reason).toMatch(/already closed/);
  // The two members still reduce together.
  const [g0, g1] = joined.map((r) => (r.status === 'fulfilled' && r.value.admitted ? r.value.group : null));
  const sums = await Promise.all([
    g0!.allReduce(new Float32Array([1, 2, 3]), { step: 0 }),
    g1!.allReduce(new Float32Array([10, 20, 30]), { step: 0 }),
  ]);
  expect(Array.from(sums[0])).toEqual([11, 22, 33]);
  expect(Array.from(sums[1])).toEqual([11, 22, 33]);
  await closeAll(joined);
});

test('a worker SIGKILLed mid-reduce: the others get peer-lost within seconds, never a hang', async () => {
  const slots = [0, 1, 2];
  const results = await runGroup(slots, (s) => ({
    lengths: [2_000_000],
    afterFirstSend: s === 1 ? 'SIGKILL' : undefined,
    livenessSeconds: 30,
    peerTimeoutSeconds: 60,
  }));
  expect(results[1].signal).toBe('SIGKILL');
  for (const r of [results[0], results[2]]) {
    expect(r.report?.error).toMatchObject({ kind: 'peer-lost', slots: [1] });
    expect(r.report!.failedAfterMs).toBeLessThan(10_000);
  }
});

test('a worker frozen mid-reduce (SIGSTOP) is declared lost after livenessSeconds', async () => {
  const slots = [0, 1, 2];
  runCounter++;
  const job = (s: number) =>
    baseJob(s, slots, {
      lengths: [2_000_000],
      afterFirstSend: s === 2 ? 'SIGSTOP' : undefined,
      livenessSeconds: 2,
      peerTimeoutSeconds: 60,
    });
  const before = new Set(children);
  const frozen = startWorker(job(2));
  const frozenChild = [...children].find((c) => !before.has(c))!;
  const results = await Promise.all([startWorker(job(0)), startWorker(job(1))]);
  // The frozen one never exits on its own.
  frozenChild.kill('SIGKILL');
  expect((await frozen).signal).toBe('SIGKILL');
  for (const r of results) {
    expect(r.report?.error).toMatchObject({ kind: 'peer-lost', slots: [2] });
    expect(r.report!.failedAfterMs).toBeLessThan(10_000);
  }
});

test('close() is a normal end for the others; close(reason) fails them fast', async () => {
  const slots = [0, 1, 2];
  const normal = await runGroup(slots, (s) => ({
    lengths: [1_000_000],
    holdMs: s === 0 ? 0 : 1500,
    lingerMs: 500,
  }));
  for (const r of normal) {
    expect(r.report).toMatchObject({ admitted: true, reductions: 1 });
    expect(r.report!.error).toBeUndefined();
    expect(r.report!.logs.join('\n')).not.toMatch(/group failed/);
  }
  const runId = `run-${process.pid}-${runCounter}`;
  expect(coordinator.stderr()).not.toMatch(new RegExp(`${runId} .*(lost|aborting)`));

  const left = await runGroup(slots, (s) => ({
    lengths: s === 0 ? [1000] : [1000, 1000],
    closeReason: s === 0 ? 'segment cancelled' : undefined,
  }));
  expect(left[0].report!.error).toBeUndefined();
  for (const r of [left[1], left[2]]) {
    expect(r.report?.error).toMatchObject({ kind: 'peer-lost', slots: [0] });
    expect(r.report!.error!.message).toMatch(/segment cancelled/);
  }
});

test('a peer that never enters the all-reduce: peer-timeout naming it, after peerTimeoutSeconds', async () => {
  const joined = await Promise.all([
    inProcessJoin(0, [0, 1], 'straggle', { peerTimeoutSeconds: 1 }),
    inProcessJoin(1, [0, 1], 'straggle', { peerTimeoutSeconds: 1 }),
  ]);
  const [g0, g1] = joined.map((j) => (j.admitted ? j.group : null));
  const started = Date.now();
  const err = await g0!.allReduce(new Float32Array(1000), { step: 0 }).catch((e) => e);
  expect(err).toMatchObject({ kind: 'peer-timeout', slots: [1] });
  expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  expect(Date.now() - started).toBeLessThan(5000);
  // The straggler is told too, and fails when it finally arrives.
  await waitFor(() => coordinator.stderr().includes('slot 0 reports: no data from slot 1'));
  await expect(g1!.allReduce(new Float32Array(1000), { step: 0 })).rejects.toMatchObject({
    kind: 'peer-timeout',
  });
  await Promise.all([g0!.close('done'), g1!.close('done')]);
});

test('losing the coordinator fails pending and later all-reduces with coordinator-lost', async () => {
  const other = await startCoordinator();
  const opts = { address: other.address, peerTimeoutSeconds: 60 };
  const joined = await Promise.all([
    inProcessJoin(0, [0, 1], 'orphan', opts),
    inProcessJoin(1, [0, 1], 'orphan', opts),
  ]);
  const [g0, g1] = joined.map((j) => (j.admitted ? j.group : null));
  const pending = g0!.allReduce(new Float32Array(1000), { step: 0 }).catch((e) => e);
  other.child.kill('SIGKILL');
  expect(await pending).toMatchObject({ kind: 'coordinator-lost' });
  await expect(g1!.allReduce(new Float32Array(1000), { step: 0 })).rejects.toMatchObject({
    kind: 'coordinator-lost',
  });
  await Promise.all([g0!.close(), g1!.close()]);
});

test('the service closes cleanly on SIGTERM', async () => {
  const other = await startCoordinator();
  expect(await stop(other.child)).toBe(0);
  expect(other.stderr()).toMatch(/SIGTERM: closing/);
});

test('the service refuses to start without a key', () => {
  const env = { ...process.env };
  delete env.DDPM_COORDINATOR_KEY;
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'coordinator/main.ts', '--port', '0'], {
    cwd: REPO,
    env,
    encoding: 'utf8',
  });
  expect(r.status).toBe(2);
  expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: no cluster key/)]);
});

function joinOptions(runId: string, slot: number, slots: number[]): JoinOptions {
  return {
    address: coordinator.address,
    clusterKey: KEY,
    runId,
    execution: 'test',
    attempt: 1,
    slot,
    expectedSlots: slots,
    minWorkers: slots.length,
    rendezvousSeconds: 30,
    startStep: 0,
    livenessSeconds: 10,
    peerTimeoutSeconds: 30,
  };
}

/** Connects, sends `payload` after the challenge, returns everything the coordinator answered. */
function rawExchange(payload: string): Promise<string> {
  const [host, port] = coordinator.address.split(':');
  return new Promise((resolvePromise, reject) => {
    const s = connect(Number(port), host);
    let got = '';
    s.on('data', (d) => {
      if (!got) s.write(payload);
      got += d.toString();
    });
    s.on('error', reject);
    s.on('close', () => resolvePromise(got));
  });
}

async function waitFor(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 50));
  }
}
