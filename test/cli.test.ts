/**
 * The user-facing commands, run as child processes the way a user runs them, against the local stack
 * they bring up themselves (a real Temporal dev server and a real trainer worker, detached): help, input
 * errors, a run to completion with status / list / sample, a CLI killed mid-run that re-attaches, cancel
 * and resume from the newest checkpoint, and stop-local leaving no daemon behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writePngGrid } from '../core/data';
import { findFreePort } from '../infra/local';

jest.setTimeout(120_000);

const REPO = path.resolve(__dirname, '..');
const TSX = path.join(REPO, 'node_modules', '.bin', 'tsx');
const COMMANDS = [
  'start-run',
  'status',
  'pause',
  'resume',
  'cancel',
  'list',
  'sample',
  'stop-local',
  'train',
] as const;
type CommandName = (typeof COMMANDS)[number];

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

const scratch = mkdtempSync(path.join(os.tmpdir(), 'ddpm-cli-'));
const stackDir = path.join(scratch, 'stack');
const store = path.join(scratch, 'store');
const dataset = path.join(scratch, 'data');
let env: NodeJS.ProcessEnv;
/** Process groups of the commands still running, killed at the end whatever happened. */
const launched = new Set<number>();
let uiPort: number;

/** Runs a command in its own process group, so a test can kill it together with tsx's child. */
function launch(
  command: CommandName,
  args: string[],
  cwd = REPO,
  commandEnv = env,
): ChildProcess & { output: Finished; done: Promise<Finished> } {
  const child = spawn(TSX, [path.join(REPO, 'cli', `${command}.ts`), ...args], {
    cwd,
    env: commandEnv,
    detached: true,
  });
  launched.add(child.pid!);
  const output: Finished = { code: null, stdout: '', stderr: '' };
  child.stdout.on('data', (b: Buffer) => (output.stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output.stderr += b.toString()));
  const done = new Promise<Finished>((resolve) =>
    child.once('close', (code) => {
      launched.delete(child.pid!);
      output.code = code;
      resolve(output);
    }),
  );
  return Object.assign(child, { output, done });
}

/** Exit 0, or a failure that shows what the command said. */
function expectSuccess(r: Finished): void {
  if (r.code !== 0) throw new Error(`exit status ${r.code}; stderr:\n${r.stderr.slice(-3000)}`);
}

const cli = (command: CommandName, args: string[], cwd?: string, commandEnv?: NodeJS.ProcessEnv) =>
  launch(command, args, cwd, commandEnv).done;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function status(
  runId: string,
): Promise<{ state: string; phase: string; step: number; totalSteps: number; checkpoint: string }> {
  const r = await cli('status', ['--run-id', runId, '--json']);
  expectSuccess(r);
  return JSON.parse(r.stdout);
}

/** Alive and not a zombie, read from /proc independently of the code under test. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function processGroup(pgid: number): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(pgrp) === pgid && state !== 'Z';
      } catch {
        return false;
      }
    })
    .map(Number);
}

const daemonPid = (name: string): number | undefined => {
  const file = path.join(stackDir, `${name}.pid`);
  return existsSync(file) ? Number(readFileSync(file, 'utf8')) : undefined;
};

/** 64 CIFAR-10 binary records: label byte, then 1024 R, 1024 G, 1024 B. */
function writeCifarDataset(dir: string, count = 64): void {
  mkdirSync(dir, { recursive: true });
  const bytes = Buffer.alloc(count * 3073);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  for (let r = 0; r < count; r++) bytes[r * 3073] = r % 10;
  writeFileSync(path.join(dir, 'data_batch_1.bin'), bytes);
}

const trainArgs = (runId: string, steps: number, extra: string[] = []) => [
  '--preset',
  'tiny',
  '--dataset',
  dataset,
  '--store',
  store,
  '--run-id',
  runId,
  '--steps',
  String(steps),
  '--batch',
  '4',
  '--checkpoint-every',
  '2',
  '--sample-every',
  String(steps),
  '--samples',
  '4',
  '--sample-steps',
  '5',
  '--backend',
  'tensorflow',
  ...extra,
];

beforeAll(async () => {
  const port = await findFreePort();
  uiPort = await findFreePort();
  env = {
    ...process.env,
    DDPM_LOCAL_STACK_DIR: stackDir,
    DDPM_LOCAL_TEMPORAL_PORT: String(port),
    DDPM_LOCAL_UI_PORT: String(uiPort),
  };
  for (const name of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'TEMPORAL_PROFILE', 'DDPM_DATA_DIR'])
    delete env[name];
  writeCifarDataset(dataset);
});

afterAll(async () => {
  for (const pgid of launched) process.kill(-pgid, 'SIGKILL');
  await cli('stop-local', ['--timeout', '20']);
  // Last resort if stop-local itself broke: nothing may outlive the test.
  for (const name of ['worker', 'worker-control', 'temporal']) {
    const pid = daemonPid(name);
    if (pid && processGroup(pid).length > 0) process.kill(-pid, 'SIGKILL');
  }
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

test('every command has --help, which names its options', async () => {
  const expected: Record<CommandName, string[]> = {
    'start-run': [
      '--preset',
      '--dataset',
      '--store',
      '--run-id',
      '--steps',
      '--batch',
      '--micro-batch',
      '--seed',
      '--lr',
      '--backend',
      '--checkpoint-every',
      '--sample-every',
      '--samples',
      '--sample-steps',
      '--keep',
      '--heartbeat-timeout',
      '--segment-hours',
      '--detach',
      '--workers',
      '--min-workers',
      '--coordinator',
      '--rendezvous-timeout',
      '--peer-timeout',
      '--wire',
      '--pool',
    ],
    status: ['--run-id', '--watch', '--json'],
    pause: ['--run-id', '--wait'],
    resume: ['--run-id', '--watch'],
    cancel: ['--run-id', '--wait'],
    list: ['--limit', '--query', '--json'],
    sample: [
      '--run-id',
      '--store',
      '--checkpoint',
      '--sampler',
      '--steps',
      '--count',
      '--batch',
      '--seed',
      '--backend',
      '--out',
      '--on-pool',
    ],
    'stop-local': ['--timeout'],
    train: ['--preset', '--dataset', '--store', '--run-id', '--steps', '--lr', '--backend', '--keep'],
  };
  const results = await Promise.all(COMMANDS.map((c) => cli(c, ['--help'])));
  results.forEach((r, i) => {
    expectSuccess(r);
    expect(r.stdout).toContain(`Usage: ${COMMANDS[i]}`);
    for (const option of expected[COMMANDS[i]]) expect(r.stdout).toContain(option);
  });
  expect(existsSync(stackDir)).toBe(false); // help starts nothing
});

test('bad input fails with one error line naming the problem, before anything starts', async () => {
  const cases: [CommandName, string[], RegExp, string?][] = [
    ['start-run', ['--preset', 'nope', '--dataset', dataset], /--preset .*'nope' is invalid.*tiny/],
    ['start-run', ['--preset', 'tiny', '--dataset', dataset, '--steps', '-3'], /--steps .*'-3' is invalid/],
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', path.join(scratch, 'missing')],
      /dataset .*missing: no such file/,
    ],
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', dataset, '--run-id', 'bad id!'],
      /--run-id .*run IDs use/,
    ],
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', dataset, '--sample-steps', '5000'],
      /invalid run input: schedule\.sampleSteps/,
    ],
    [
      'start-run',
      ['--preset', 'tiny'],
      /no dataset for preset 'tiny' in .*cifar-10-batches-bin.*pass --dataset/,
      scratch,
    ],
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', dataset, '--workers', '2', '--min-workers', '3'],
      /invalid run input: parallel\.minWorkers: minWorkers must not exceed workers/,
    ],
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', dataset, '--workers', '2', '--coordinator', 'nowhere'],
      /invalid run input: parallel\.coordinator: expected host:port/,
    ],
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', dataset, '--workers', '2', '--pool', 'mine'],
      /--pool is for clusters/,
    ],
    ['status', ['--run-id', '../x'], /--run-id .*run IDs use/],
    // Numbers are read whole: a trailing word, an empty value or hex is refused, not half-parsed.
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', dataset, '--lr', '1e-3junk'],
      /--lr .*'1e-3junk' is invalid/,
    ],
    ['start-run', ['--preset', 'tiny', '--dataset', dataset, '--seed', ''], /--seed .*'' is invalid/],
    ['start-run', ['--preset', 'tiny', '--dataset', dataset, '--keep', '0x10'], /--keep .*'0x10' is invalid/],
    [
      'start-run',
      ['--preset', 'tiny', '--dataset', dataset, '--segment-hours', '2h'],
      /--segment-hours .*'2h' is invalid/,
    ],
    ['train', ['--preset', 'tiny', '--dataset', dataset, '--lr', '3e-4x'], /--lr .*'3e-4x' is invalid/],
    ['train', ['--preset', 'tiny', '--dataset', dataset, '--run-id', '../../etc'], /--run-id .*run IDs use/],
    ['sample', ['--run-id', 'nothing', '--store', store], /run nothing has no valid checkpoint/],
  ];
  const results = await Promise.all(cases.map(([c, args, , cwd]) => cli(c, args, cwd)));
  results.forEach((r, i) => {
    expect({ case: cases[i][1].join(' '), code: r.code }).toEqual({ case: cases[i][1].join(' '), code: 1 });
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: /);
    expect(lines[0]).toMatch(cases[i][2]);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
  expect(existsSync(path.join(stackDir, 'temporal.pid'))).toBe(false);
});

test('start-run checks what it can before a run starts: image size against the preset, S3 reachability', async () => {
  const pngs = path.join(scratch, 'png-8x8');
  mkdirSync(pngs, { recursive: true });
  for (let i = 0; i < 2; i++)
    await writePngGrid(path.join(pngs, `${i}.png`), new Uint8Array(8 * 8 * 3).fill(i * 50), 1, 8, 8, 3, {
      padding: 0,
    });
  // No AWS credentials anywhere: no variables, no ~/.aws, no instance metadata to ask.
  const noAws: NodeJS.ProcessEnv = { ...env, HOME: scratch, AWS_EC2_METADATA_DISABLED: 'true' };
  for (const name of Object.keys(noAws))
    if (name.startsWith('AWS_') && name !== 'AWS_EC2_METADATA_DISABLED') delete noAws[name];
  const cases: [string[], RegExp, NodeJS.ProcessEnv?][] = [
    [
      ['--preset', 'tiny', '--dataset', pngs],
      /^error: dataset at .*png-8x8 holds 8x8x3 images but preset 'tiny' expects 32x32x3$/,
    ],
    [
      ['--preset', 'tiny', '--dataset', 'embedded:mnist-digits'],
      /^error: dataset embedded:mnist-digits holds 28x28x1 images but preset 'tiny' expects 32x32x3$/,
    ],
    [
      ['--preset', 'tiny', '--dataset', 's3://ddpm-nowhere/cifar'],
      /^error: dataset s3:\/\/ddpm-nowhere\/cifar: not reachable with this machine's AWS settings \(.*credentials.*\)$/i,
      noAws,
    ],
    [
      ['--preset', 'tiny', '--dataset', dataset, '--store', 's3://ddpm-nowhere/runs'],
      /^error: store s3:\/\/ddpm-nowhere\/runs: not reachable with this machine's AWS settings \(.*credentials.*\)$/i,
      noAws,
    ],
  ];
  const results = await Promise.all(cases.map(([args, , e]) => cli('start-run', args, undefined, e)));
  results.forEach((r, i) => {
    expect({ case: cases[i][0].join(' '), code: r.code }).toEqual({ case: cases[i][0].join(' '), code: 1 });
    // One error line and no stack (on Node 20 the AWS SDK may add its own Node-version warning).
    const errors = r.stderr.split('\n').filter((line) => line.startsWith('error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(cases[i][1]);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
  expect(existsSync(path.join(stackDir, 'temporal.pid'))).toBe(false);
});

test('start-run brings up the stack and trains to completion; status, list and sample see the run', async () => {
  const r = await cli('start-run', trainArgs('e2e', 4));
  expect(r.stderr).toMatch(/started a Temporal dev server/);
  expect(r.stderr).toMatch(/started a trainer worker/);
  expect(r.stderr).toMatch(/^e2e \d\/4 \| loss .* \| img\/s .* \| phase /m);
  expectSuccess(r);
  expect(r.stdout).toContain('run: e2e\n');
  expect(r.stdout).toContain(`view: http://localhost:${uiPort}/namespaces/default/workflows/e2e\n`);
  expect(r.stdout).toContain(`checkpoint: ${store}/e2e/checkpoints/000000004\n`);
  expect(r.stdout).toContain(`samples:    ${store}/e2e/samples/000000004.png\n`);
  expect(existsSync(path.join(store, 'e2e', 'checkpoints', '000000004', 'manifest.json'))).toBe(true);
  const png = readFileSync(path.join(store, 'e2e', 'samples', '000000004.png'));
  expect(png.subarray(1, 4).toString()).toBe('PNG');

  const s = await status('e2e');
  expect(s).toMatchObject({ state: 'completed', phase: 'completed', step: 4, totalSteps: 4 });
  expect(s.checkpoint).toBe(`${store}/e2e/checkpoints/000000004`);

  const [list, table, sample] = await Promise.all([
    cli('list', ['--json']),
    cli('list', []),
    cli('sample', [
      '--run-id',
      'e2e',
      '--store',
      store,
      '--count',
      '4',
      '--steps',
      '3',
      '--backend',
      'tensorflow',
      '--out',
      path.join(scratch, 'samples'),
    ]),
  ]);
  expectSuccess(list);
  const rows = list.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(rows).toContainEqual(
    expect.objectContaining({
      runId: 'e2e',
      state: 'completed',
      phase: 'completed',
      preset: 'tiny',
      step: 4,
    }),
  );
  expect(table.stdout).toMatch(/^RUN ID\s+STATE\s+PHASE\s+PRESET\s+STEP\s+LOSS\s+STARTED$/m);
  expect(table.stdout).toMatch(/^e2e\s+completed\s+completed\s+tiny\s+4\s+\d/m);
  expectSuccess(sample);
  const setUri = new RegExp(`^file://${store}/e2e/samples/000000004/ddim3-seed\\d+-n4$`);
  expect(sample.stdout.trim()).toMatch(setUri);
  // 2x2 grid of 32x32 images with 2-pixel padding: 70x70.
  const grid = readFileSync(path.join(scratch, 'samples', 'grid.png'));
  expect([grid.readUInt32BE(16), grid.readUInt32BE(20)]).toEqual([70, 70]);
  expect(readdirSync(path.join(scratch, 'samples', 'images'))).toHaveLength(4);

  // A completed run is not started again: start-run reports its result.
  const again = await cli('start-run', trainArgs('e2e', 4));
  expectSuccess(again);
  expect(again.stdout).toContain('run e2e completed: step 4');
  expect(again.stderr).not.toMatch(/started run/);
});

test("sample --on-pool runs on the run's trainer pool through Temporal; repeated, it reuses the chunk", async () => {
  // The e2e run of the test above; its store, pool and backend come from its workflow input.
  const poolArgs = ['--run-id', 'e2e', '--count', '4', '--steps', '3', '--seed', '5', '--on-pool'];
  const onPool = await cli('sample', poolArgs);
  expectSuccess(onPool);
  expect(onPool.stdout.trim()).toBe(`file://${store}/e2e/samples/000000004/ddim3-seed5-n4`);
  expect(onPool.stderr).toMatch(/^sample 4\/4 \| img\/s /m);
  expect(onPool.stderr).toMatch(/^1 chunks on tensorflow$/m);
  const repeated = await cli('sample', poolArgs);
  expectSuccess(repeated);
  expect(repeated.stderr).toMatch(/^1 chunks on tensorflow \(1 reused\)$/m);
}, 240_000);

test('a killed CLI leaves the run going; start-run re-attaches to it and it completes', async () => {
  const first = launch('start-run', trainArgs('kill', 40));
  await until('the run to start', async () => (first.output.stdout.includes('view: ') ? true : undefined));
  process.kill(-first.pid!, 'SIGKILL');
  await first.done;
  await until('the killed CLI to be gone', async () =>
    processGroup(first.pid!).length === 0 ? true : undefined,
  );

  // Nobody watches, yet the detached worker trains on.
  const progressed = await until('steps without a CLI', async () => {
    const s = await status('kill');
    return s.step >= 2 ? s : undefined;
  });
  expect(progressed.state).toBe('running');
  // Paused, the run cannot finish before the next start-run looks at it.
  const paused = await cli('pause', ['--run-id', 'kill', '--wait']);
  expect(paused.stdout).toMatch(/run kill paused at step \d+/);
  expect((await status('kill')).phase).toBe('paused');

  const second = launch('start-run', ['--preset', 'tiny', '--dataset', dataset, '--run-id', 'kill']);
  await until('the re-attach', async () => (second.output.stdout.includes('view: ') ? true : undefined));
  expect(second.output.stderr).toContain('run kill is already running: re-attaching');
  const resumed = await cli('resume', ['--run-id', 'kill']);
  expect(resumed.stdout).toMatch(/resumed run kill at step \d+/);
  const r = await second.done;
  expectSuccess(r);
  expect(r.stdout).toContain('run kill completed: step 40');
  expect(r.stdout).toContain(`checkpoint: ${store}/kill/checkpoints/000000040`);
});

test('Ctrl-C only detaches; cancel checkpoints and ends the run; resume starts it again from its newest checkpoint', async () => {
  const watching = launch('start-run', trainArgs('again', 40));
  await until('the run to start', async () => (watching.output.stdout.includes('view: ') ? true : undefined));
  process.kill(-watching.pid!, 'SIGINT'); // Ctrl-C: the terminal signals the whole foreground group
  const detached = await watching.done;
  expectSuccess(detached);
  expect(detached.stdout).toContain('detached: run again keeps running');
  expect(detached.stdout).toContain('npm run status -- --run-id again --watch');
  const again = await cli('start-run', [...trainArgs('again', 40), '--detach']);
  expectSuccess(again);
  expect(again.stderr).toContain('run again is already running: re-attaching');
  expect(again.stdout).toContain('follow it with: npm run status -- --run-id again --watch');
  await until('the first checkpoint', async () => ((await status('again')).step >= 2 ? true : undefined));
  const cancelled = await cli('cancel', ['--run-id', 'again', '--wait']);
  expectSuccess(cancelled);
  const atStep = Number(/run again cancelled at step (\d+)/.exec(cancelled.stdout)?.[1]);
  expect(atStep).toBeGreaterThanOrEqual(2);
  expect(await status('again')).toMatchObject({ state: 'cancelled', step: atStep });
  expect((await cli('pause', ['--run-id', 'again'])).stderr).toMatch(
    /^error: run again is not running \(it cancelled\)$/m,
  );

  const resumed = await cli('resume', ['--run-id', 'again', '--watch']);
  // Cancelled mid-segment, the trainer checkpointed the step it stopped at, and cancel reported that step.
  const from = /resuming from file:\/\/(\S+)\/again\/checkpoints\/(\d+) \(step (\d+)\)/.exec(resumed.stderr);
  expect(from?.[1]).toBe(store);
  expect(Number(from?.[3])).toBe(atStep);
  expect(resumed.stderr).not.toMatch(/^again 0\/40 /m); // it did not start over
  expectSuccess(resumed);
  expect(resumed.stdout).toContain('run again completed: step 40');
});

test('a trainer worker that dies is replaced while a command watches, and the run completes', async () => {
  // A short heartbeat timeout, so the segment the dead worker held is retried soon.
  const watching = launch('start-run', trainArgs('phoenix', 24, ['--heartbeat-timeout', '15']));
  await until('the run to start', async () => (watching.output.stdout.includes('view: ') ? true : undefined));
  await until('training', async () => ((await status('phoenix')).step >= 2 ? true : undefined));
  const dead = daemonPid('worker')!;
  process.kill(-dead, 'SIGKILL'); // a crash: no checkpoint, no goodbye
  const r = await watching.done;
  expectSuccess(r);
  expect(r.stdout).toContain('run phoenix completed: step 24');
  const replacement = daemonPid('worker')!;
  expect(replacement).not.toBe(dead);
  expect(r.stderr).toContain(`started a trainer worker (pid ${replacement}`);
  expect(alive(replacement)).toBe(true);
});

test('stop-local stops the detached server and workers, and nothing of them is left', async () => {
  const server = daemonPid('temporal');
  const worker = daemonPid('worker');
  const control = daemonPid('worker-control');
  expect(server && alive(server)).toBe(true);
  expect(worker && alive(worker)).toBe(true);
  expect(control && alive(control)).toBe(true);
  const r = await cli('stop-local', []);
  expectSuccess(r);
  expect(r.stdout).toContain(`stopped trainer worker (pid ${worker})`);
  expect(r.stdout).toContain(`stopped control worker (pid ${control})`);
  expect(processGroup(control!)).toEqual([]);
  expect(r.stdout).toContain(`stopped Temporal dev server (pid ${server})`);
  expect(processGroup(worker!)).toEqual([]);
  expect(processGroup(server!)).toEqual([]);
  expect(alive(server!)).toBe(false);
  expect((await cli('stop-local', [])).stdout).toContain('nothing to stop');
});
