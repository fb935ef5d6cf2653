/**
 * Ring all-reduce throughput on this machine, printed as one JSON object (progress on stderr).
 *
 *   npm run bench:allreduce -- --workers 2,4 --mb 143 [--iters 5] [--wire fp32|bf16]
 *
 * For each world size: an in-process coordinator and that many worker processes on loopback; each timed
 * all-reduce is preceded by a one-float all-reduce as a barrier, and its time is the slowest rank's.
 * Bus bandwidth = 2(N-1)/N x size / time, what each link carries; it is compared with the limit measured
 * here: one Node process streaming the same bytes to another over loopback TCP, with no processing.
 * On a machine with fewer cores than processes, the workers share them; loadavg is reported.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { runCli } from '../common/errors';
import { nonNegativeInt, positiveInt, positiveNumber } from '../common/options';
import type { WireFormat } from '../coordinator/api';
import { joinGroup } from '../coordinator/client';
import { CoordinatorServer } from '../coordinator/server';

const ROLE_ENV = 'DDPM_ALLREDUCE_BENCH_ROLE';
const KEY = 'allreduce-bench';

interface WorkerJob {
  role: 'worker';
  address: string;
  slot: number;
  slots: number[];
  floats: number;
  warmup: number;
  iters: number;
  wire: WireFormat;
}

interface RawJob {
  role: 'raw-send' | 'raw-recv';
  port: number;
  bytes: number;
  iters: number;
}

/** One process of a raw ring: the all-reduce's traffic pattern with no reduction, its ceiling here. */
interface RawRingJob {
  role: 'raw-ring';
  rank: number;
  world: number;
  bytesPerLink: number;
  iters: number;
}

/** One rank: per-iteration seconds of the timed all-reduce, barrier excluded. */
async function worker(job: WorkerJob): Promise<void> {
  const joined = await joinGroup({
    address: job.address,
    clusterKey: KEY,
    runId: 'bench',
    execution: `n${job.slots.length}`,
    attempt: 1,
    slot: job.slot,
    expectedSlots: job.slots,
    minWorkers: job.slots.length,
    rendezvousSeconds: 60,
    startStep: 0,
    livenessSeconds: 60,
    peerTimeoutSeconds: 120,
    wire: job.wire,
  });
  if (!joined.admitted) throw new Error(`not admitted: ${joined.reason}`);
  const group = joined.group;
  const buf = new Float32Array(job.floats);
  const barrier = new Float32Array(1);
  const seconds: number[] = [];
  const cpu = { user: 0, system: 0 };
  let step = 0;
  for (let i = 0; i < job.warmup + job.iters; i++) {
    // Fresh values each time so repeated sums stay finite; not timed.
    buf.fill(0.25 * (job.slot + 1));
    await group.allReduce(barrier, { step: step++ });
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await group.allReduce(buf, { step: step++ });
    if (i >= job.warmup) {
      seconds.push((performance.now() - t0) / 1000);
      const c = process.cpuUsage(c0);
      cpu.user += c.user / 1e6 / job.iters;
      cpu.system += c.system / 1e6 / job.iters;
    }
  }
  const expected = 0.25 * job.slots.reduce((a, s) => a + s + 1, 0);
  if (job.wire === 'fp32' && buf[buf.length - 1] !== expected)
    throw new Error(`wrong sum: ${buf[buf.length - 1]} != ${expected}`);
  await group.close();
  process.stdout.write(`${JSON.stringify({ slot: job.slot, seconds, cpu })}\n`);
}

/**
 * The limit: one process streams bytes to another, which reads them into a reused 4 MiB buffer (the
 * fastest receive path Node has, the one the ring uses) and drops them. The receiver connects, as in
 * the ring, because only a connecting socket can read into memory of its choosing.
 */
async function rawSend(job: RawJob): Promise<void> {
  const data = Buffer.alloc(job.bytes, 1);
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`listening ${listeningPort(server)}\n`);
  const [socket] = (await once(server, 'connection')) as [Socket];
  socket.setNoDelay(true);
  const seconds: number[] = [];
  for (let i = 0; i < job.iters; i++) {
    const t0 = performance.now();
    const acked = once(socket, 'data');
    writeAll(socket, data);
    await acked;
    seconds.push((performance.now() - t0) / 1000);
  }
  socket.end();
  server.close();
  process.stdout.write(`${JSON.stringify({ seconds })}\n`);
}

async function rawRecv(job: RawJob): Promise<void> {
  let got = 0;
  const socket: Socket = connect({
    port: job.port,
    host: '127.0.0.1',
    noDelay: true,
    onread: {
      buffer: Buffer.alloc(4 << 20),
      callback: (n) => {
        got += n;
        if (got >= job.bytes) {
          got -= job.bytes;
          socket.write('k');
        }
        return true;
      },
    },
  });
  await once(socket, 'close');
}

function writeAll(socket: Socket, data: Buffer, done?: () => void): void {
  for (let off = 0; off < data.length; off += 4 << 20) {
    const last = off + (4 << 20) >= data.length;
    socket.write(data.subarray(off, off + (4 << 20)), last ? done : undefined);
  }
}

async function rawRing(job: RawRingJob): Promise<void> {
  const world = job.world;
  const data = Buffer.alloc(job.bytesPerLink, 1);
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // The successor may connect as soon as it is told to, before this process has been told.
  const accepted = once(server, 'connection');
  process.stdout.write(`listening ${listeningPort(server)}\n`);
  // Everyone connects only once all are listening: the parent sends every port on stdin.
  const [line] = (await once(process.stdin, 'data')) as [Buffer];
  const ports = JSON.parse(line.toString()) as number[];
  let got = 0;
  let onBytes = () => {};
  const prev = ports[(job.rank + world - 1) % world];
  const recv = connect({
    port: prev,
    host: '127.0.0.1',
    noDelay: true,
    onread: {
      buffer: Buffer.alloc(4 << 20),
      callback: (n) => {
        got += n;
        onBytes();
        return true;
      },
    },
  });
  const [out] = (await accepted) as [Socket];
  out.setNoDelay(true);
  const seconds: number[] = [];
  for (let i = 0; i < job.iters; i++) {
    const t0 = performance.now();
    const received = new Promise<void>((r) => {
      onBytes = () => {
        if (got < job.bytesPerLink) return;
        got -= job.bytesPerLink;
        onBytes = () => {};
        r();
      };
      onBytes();
    });
    const written = new Promise<void>((r) => writeAll(out, data, r));
    await Promise.all([received, written]);
    seconds.push((performance.now() - t0) / 1000);
  }
  out.end();
  recv.end();
  server.close();
  process.stdout.write(`${JSON.stringify({ seconds })}\n`);
}

function listeningPort(server: Server): number {
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

function spawnSelf(job: WorkerJob | RawJob | RawRingJob) {
  const child = spawn(process.execPath, ['--import', 'tsx', __filename], {
    env: { ...process.env, [ROLE_ENV]: JSON.stringify(job) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  let onLine: (l: string) => void = () => {};
  const firstLine = new Promise<string>((r) => (onLine = r));
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.includes('\n')) onLine(out.split('\n')[0]);
  });
  const done = new Promise<string>((resolve, reject) =>
    child.once('exit', (code) =>
      code === 0 ? resolve(out.trim()) : reject(new Error(`${job.role} exited with ${code}`)),
    ),
  );
  return { child, done, firstLine };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function measureLimit(bytes: number, iters: number) {
  const send = spawnSelf({ role: 'raw-send', port: 0, bytes, iters });
  const port = Number((await send.firstLine).split(' ')[1]);
  const recv = spawnSelf({ role: 'raw-recv', port, bytes, iters });
  const { seconds } = JSON.parse((await send.done).split('\n').pop()!) as { seconds: number[] };
  await recv.done;
  const timed = seconds.slice(1);
  return {
    medianSeconds: median(timed),
    minSeconds: Math.min(...timed),
    bandwidthGBps: bytes / median(timed) / 1e9,
  };
}

/** Per-iteration seconds (slowest process) of the ring's traffic pattern moved with no processing. */
async function measureRawRing(world: number, bytes: number, iters: number): Promise<number[]> {
  const bytesPerLink = Math.round(((2 * (world - 1)) / world) * (bytes / 4)) * 4;
  const procs = Array.from({ length: world }, (_, rank) =>
    spawnSelf({ role: 'raw-ring', rank, world, bytesPerLink, iters: iters + 1 }),
  );
  const ports = await Promise.all(procs.map(async (p) => Number((await p.firstLine).split(' ')[1])));
  for (const p of procs) p.child.stdin!.end(`${JSON.stringify(ports)}\n`);
  const perRank = (await Promise.all(procs.map((p) => p.done))).map((l) =>
    (JSON.parse(l.split('\n').pop()!) as { seconds: number[] }).seconds.slice(1),
  );
  return Array.from({ length: iters }, (_, i) => Math.max(...perRank.map((s) => s[i])));
}

async function measureWorld(world: number, floats: number, o: Options) {
  const server = new CoordinatorServer({ clusterKey: KEY, port: 0, log: () => {} });
  const { host, port } = await server.listen();
  const slots = Array.from({ length: world }, (_, i) => i);
  try {
    const outs = await Promise.all(
      slots.map(
        (slot) =>
          spawnSelf({
            role: 'worker',
            address: `${host}:${port}`,
            slot,
            slots,
            floats,
            warmup: o.warmup,
            iters: o.iters,
            wire: o.wire,
          }).done,
      ),
    );
    const ranks = outs.map(
      (l) => JSON.parse(l) as { seconds: number[]; cpu: { user: number; system: number } },
    );
    // A collective is done when its slowest rank is.
    const seconds = Array.from({ length: o.iters }, (_, i) => Math.max(...ranks.map((r) => r.seconds[i])));
    const cpuPerRank = ranks.map((r) => ({ user: round(r.cpu.user), system: round(r.cpu.system) }));
    return { seconds, cpuPerRank };
  } finally {
    await server.close();
  }
}

function worldList(value: string): number[] {
  const ns = value.split(',').map(Number);
  if (ns.some((n) => !Number.isInteger(n) || n < 1 || n > 64))
    throw new InvalidArgumentError(`expected world sizes like 2,4, got '${value}'`);
  return ns;
}

interface Options {
  workers: number[];
  mb: number;
  iters: number;
  warmup: number;
  wire: WireFormat;
}

const program = new Command('bench:allreduce')
  .description('Measure ring all-reduce throughput against raw loopback TCP; prints one JSON object')
  .option('--workers <list>', 'world sizes to measure', worldList, [2, 4])
  .option(
    '--mb <n>',
    'buffer size in MB (10^6 bytes of fp32); 143 = the cifar10 U-Net gradient',
    positiveNumber,
    143,
  )
  .option('--iters <n>', 'timed all-reduces per world size', positiveInt, 5)
  .option('--warmup <n>', 'untimed all-reduces first', nonNegativeInt, 1)
  .addOption(new Option('--wire <format>', 'transfer precision').choices(['fp32', 'bf16']).default('fp32'));

async function main(): Promise<void> {
  const o = program.parse().opts<Options>();
  const floats = Math.round((o.mb * 1e6) / 4);
  const bytes = floats * 4;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  log(`raw loopback TCP, ${(bytes / 1e6).toFixed(1)} MB x ${o.iters + 1}`);
  const limit = await measureLimit(bytes, o.iters + 1);
  log(`  ${limit.bandwidthGBps.toFixed(2)} GB/s`);
  const results = [];
  for (const world of o.workers) {
    log(`ring all-reduce, ${world} workers, ${o.wire}, ${o.warmup} + ${o.iters} iterations`);
    const { seconds, cpuPerRank } = await measureWorld(world, floats, o);
    const med = median(seconds);
    const bus = world > 1 ? ((2 * (world - 1)) / world) * bytes : 0;
    const raw = world > 1 ? median(await measureRawRing(world, bytes, o.iters)) : NaN;
    const r = {
      workers: world,
      medianSeconds: round(med),
      minSeconds: round(Math.min(...seconds)),
      seconds: seconds.map(round),
      algBandwidthGBps: round(bytes / med / 1e9),
      busBandwidthGBps: round(bus / med / 1e9),
      busFractionOfLimit: round(bus / med / 1e9 / limit.bandwidthGBps),
      rawRing: {
        what: `${world} processes move the same per-link bytes around a loopback ring, no processing`,
        medianSeconds: round(raw),
        busBandwidthGBps: round(bus / raw / 1e9),
      },
      fractionOfRawRing: round(raw / med),
      cpuSecondsPerReducePerRank: cpuPerRank,
      loadavgAfter: loadavg().map(round),
    };
    log(
      `  median ${r.medianSeconds} s, bus ${r.busBandwidthGBps} GB/s = ${r.busFractionOfLimit} of the limit`,
    );
    results.push(r);
  }
  const report = {
    bytes,
    floats,
    wire: o.wire,
    iters: o.iters,
    warmup: o.warmup,
    machine: {
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model,
      node: process.version,
      loadavgAtEnd: loadavg().map(round),
    },
    limit: {
      what: 'one process streams the same bytes to another over loopback TCP, no processing',
      medianSeconds: round(limit.medianSeconds),
      minSeconds: round(limit.minSeconds),
      bandwidthGBps: round(limit.bandwidthGBps),
    },
    results,
    notes: [
      'busBandwidth = 2(N-1)/N x fp32 bytes / time (with --wire bf16 the links carry half that).',
      'busFractionOfLimit compares with one stream between two processes; the ring runs N streams at ' +
        'once, and on loopback every stream costs CPU (two kernel copies per byte), so with fewer cores ' +
        'than 2N processes the raw ring (same traffic, no reduction) is the tighter ceiling: fractionOfRawRing.',
    ],
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const role = process.env[ROLE_ENV];
if (role) {
  const job = JSON.parse(role) as WorkerJob | RawJob | RawRingJob;
  runCli(() => {
    switch (job.role) {
      case 'worker':
        return worker(job);
      case 'raw-send':
        return rawSend(job);
      case 'raw-recv':
        return rawRecv(job);
      case 'raw-ring':
        return rawRing(job);
    }
  });
} else {
  runCli(main);
}
