/**
 * Strangers on the network: a trainer's ring listener (open before its group forms) flooded by junk
 * connections, and a coordinator fed peer fields built to forge log lines. Real processes and sockets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { ringProof } from '../coordinator/auth';
import { startCoordinatorProcess, type CoordinatorProcess } from '../coordinator/spawn';
import { PROTOCOL_VERSION } from '../coordinator/protocol';

jest.setTimeout(60_000);

const REPO = resolve(__dirname, '..');
const children = new Set<ChildProcess>();
const sockets = new Set<Socket>();

afterEach(() => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  for (const c of children) c.kill('SIGKILL');
  children.clear();
});

interface Host {
  port: number;
  ask: (command: string, answer: RegExp) => Promise<string>;
}

/** The listener's host process; `ask` writes a command and resolves with the first new line matching `answer`. */
async function startHost(): Promise<Host> {
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', 'test/helpers/ring-listener-host.ts'],
    {
      cwd: REPO,
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  children.add(child);
  let out = '';
  const waitFor = (pattern: RegExp, from: number) =>
    new Promise<string>((resolvePromise, reject) => {
      const check = () => {
        const m = pattern.exec(out.slice(from));
        if (!m) return false;
        child.stdout!.off('data', onData);
        resolvePromise(m[0]);
        return true;
      };
      const onData = (d: Buffer) => {
        out += d.toString();
        check();
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`listener host exited (${code})`)));
      check();
    });
  const ready = await waitFor(/READY (\d+)/, 0);
  return {
    port: Number(ready.split(' ')[1]),
    ask: (command, answer) => {
      const from = out.length;
      child.stdin!.write(`${command}\n`);
      return waitFor(answer, from);
    },
  };
}

async function stats(host: Host): Promise<{ rssBytes: number; connections: number; bytes: number }> {
  return JSON.parse(await host.ask('stats', /\{.*\}/));
}

function open(port: number): Promise<Socket> {
  return new Promise((resolvePromise, reject) => {
    const s = connect(port, '127.0.0.1', () => resolvePromise(s));
    s.on('error', () => {}); // the listener may drop us mid-write: that is the point
    s.once('error', reject);
    sockets.add(s);
  });
}

/** Writes `bytes` of junk, resolving once written or once the peer has dropped the connection. */
function junk(s: Socket, bytes: number): Promise<void> {
  return new Promise((resolvePromise) => {
    s.once('close', () => resolvePromise());
    s.write(randomBytes(bytes), () => resolvePromise());
  });
}

test('junk from 60 unproven connections is not kept: bytes, connections and RSS stay bounded', async () => {
  const host = await startHost();
  const before = await stats(host);
  const conns = await Promise.all(Array.from({ length: 60 }, () => open(host.port)));
  // 4 MiB each, 240 MiB in all: what a trainer waiting for its group used to keep in memory.
  await Promise.all(conns.map((s) => junk(s, 4 << 20)));
  const after = await stats(host);
  const growthMb = (after.rssBytes - before.rssBytes) / 2 ** 20;
  console.log(
    `listener RSS ${(before.rssBytes / 2 ** 20).toFixed(0)} -> ${(after.rssBytes / 2 ** 20).toFixed(0)} MB after 240 MiB of junk`,
  );
  expect(after.bytes).toBeLessThanOrEqual(after.connections * 32);
  expect(growthMb).toBeLessThan(64);

  // The expected successor still gets through afterwards.
  const token = randomBytes(32).toString('hex');
  const accepted = host.ask(`expect ${token}`, /ACCEPTED|FAILED.*/);
  const peer = await open(host.port);
  peer.write(ringProof(token, 'connect', 1, 0));
  expect(await accepted).toBe('ACCEPTED');
});

test('idle unproven connections are capped: the oldest go, and the real peer still gets in', async () => {
  const host = await startHost();
  await Promise.all(Array.from({ length: 200 }, () => open(host.port)));
  const held = await stats(host);
  expect(held.connections).toBeLessThanOrEqual(64);

  const token = randomBytes(32).toString('hex');
  const accepted = host.ask(`expect ${token}`, /ACCEPTED|FAILED.*/);
  const peer = await open(host.port);
  peer.write(ringProof(token, 'connect', 1, 0));
  expect(await accepted).toBe('ACCEPTED');
});

describe('the coordinator log', () => {
  let coordinator: CoordinatorProcess;
  beforeAll(async () => {
    coordinator = await startCoordinatorProcess(randomBytes(16).toString('hex'));
  });
  afterAll(() => {
    coordinator?.child.kill('SIGKILL');
  });

  test('a run ID with a newline cannot forge a log line', async () => {
    const forged = 'run real attempt 1: group formed, ranks = slots 0,1';
    const [host, port] = coordinator.address.split(':');
    const s = connect(Number(port), host);
    sockets.add(s);
    s.on('error', () => {});
    s.write(
      `${JSON.stringify({
        type: 'join',
        version: PROTOCOL_VERSION,
        runId: `x\n[coordinator] ${forged}\r\u001b[2K`,
        execution: 'e\n',
        attempt: 1,
        slot: 0,
        expectedSlots: [0],
        minWorkers: 1,
        rendezvousSeconds: 5,
        startStep: 0,
        livenessSeconds: 5,
        dataAddress: '127.0.0.1:1',
        wire: 'fp32',
        proof: 'ab',
      })}\n`,
    );
    const deadline = Date.now() + 10_000;
    while (!/wrong proof for run x/.test(coordinator.stderr()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const lines = coordinator.stderr().split('\n');
    const refusal = lines.find((l) => l.includes('wrong proof for run x'));
    expect(refusal).toContain(`x\\n[coordinator] ${forged}\\r\\u001b[2K`);
    expect(lines.filter((l) => l.startsWith(`[coordinator] ${forged}`))).toEqual([]);
    expect(coordinator.stderr()).not.toContain('\r');
    expect(coordinator.stderr()).not.toContain('\u001b');
  });
});
