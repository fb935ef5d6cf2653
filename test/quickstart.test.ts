/**
 * The README's quick start, as a new user runs it: `npm install && npm run start-run` in a fresh clone
 * with nothing beside it (no ../shared, no node_modules, no .cache), only shortened by preset overrides.
 * A set-up step that only works in a developer's checkout (something in node_modules or .cache that no
 * command installs) fails here. The clone reuses this machine's tool caches (DDPM_TOOLS_CACHE,
 * TFJS_NATIVE_CACHE, as every clone does by default), so the first-use installs take seconds rather than
 * a Go build; the clone's own part of the native install (its tfjs-node link) is made from scratch.
 *
 * The clone is of this checkout's HEAD plus its uncommitted changes (tracked edits and untracked files
 * that git does not ignore), so the check covers the tree under test, not only the last commit.
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '../infra/local/ports';

const REPO = path.resolve(__dirname, '..');
let scratch: string;
let clone: string;
let env: NodeJS.ProcessEnv;

function git(args: string[], cwd = REPO): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8' });
}

/** A fresh clone of HEAD with the working tree's changes on top. */
function cloneWorkingTree(target: string): void {
  git(['clone', '--quiet', '--no-hardlinks', REPO, target], os.tmpdir());
  const changed = git(['ls-files', '-z', '--modified', '--others', '--exclude-standard']).split('\0');
  const deleted = new Set(git(['ls-files', '-z', '--deleted']).split('\0'));
  for (const file of changed.filter((f) => f && !deleted.has(f))) {
    mkdirSync(path.dirname(path.join(target, file)), { recursive: true });
    copyFileSync(path.join(REPO, file), path.join(target, file));
  }
  for (const file of [...deleted].filter(Boolean)) rmSync(path.join(target, file), { force: true });
}

function run(
  command: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: clone, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  // Nothing beside the clone: its parent folder is empty, so no ../shared/data or ../node_modules.
  scratch = mkdtempSync(path.join(os.tmpdir(), 'ddpm-quickstart-'));
  clone = path.join(scratch, 'ddpm-temporal');
  cloneWorkingTree(clone);
  env = {
    ...process.env,
    DDPM_LOCAL_TEMPORAL_PORT: String(await findFreePort()),
    DDPM_LOCAL_UI_PORT: String(await findFreePort()),
    DDPM_LOCAL_COORDINATOR_PORT: String(await findFreePort()),
  };
  // A configured Temporal service, a data folder or a preset stack dir would bypass what is checked.
  for (const name of [
    'TEMPORAL_ADDRESS',
    'TEMPORAL_NAMESPACE',
    'TEMPORAL_PROFILE',
    'DDPM_DATA_DIR',
    'DDPM_LOCAL_STACK_DIR',
    'npm_config_prefix',
  ])
    delete env[name];
});

afterAll(async () => {
  if (existsSync(path.join(clone, 'node_modules'))) {
    await run('npm', ['run', 'stop-local', '--', '--timeout', '30'], 90_000);
  }
  rmSync(scratch, { recursive: true, force: true });
}, 120_000);

test('npm install && npm run start-run in a fresh clone trains the default preset and writes its grid', async () => {
  expect(existsSync(path.join(clone, 'node_modules'))).toBe(false);
  expect(existsSync(path.join(clone, '.cache'))).toBe(false);

  const install = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], 600_000);
  expect({ code: install.code, stderr: install.stderr.slice(-2000) }).toEqual({
    code: 0,
    stderr: expect.any(String),
  });

  const start = await run(
    'npm',
    [
      ...['run', 'start-run', '--'],
      ...['--steps', '20', '--checkpoint-every', '10', '--sample-every', '20'],
      ...['--samples', '4', '--sample-steps', '5'],
      // One in-run evaluation, at the end, on few samples (the default run has two, on 256).
      ...['--evaluate-every', '20', '--eval-samples', '16'],
    ],
    600_000,
  );
  const transcript = `stdout:\n${start.stdout}\nstderr:\n${start.stderr}`;
  expect({ code: start.code, transcript }).toEqual({ code: 0, transcript: expect.any(String) });
  // The default preset (its name starts the default run ID), trained to the end, its grid where it says.
  const runId = /^run: (digits-\S+)$/m.exec(start.stdout)?.[1];
  expect(runId).toBeDefined();
  expect(start.stdout).toMatch(new RegExp(`^run ${runId} completed: step 20, loss \\d`, 'm'));
  const samples = /^samples: +(\S+)$/m.exec(start.stdout)?.[1] ?? '';
  const grid = samples.startsWith('file:') ? fileURLToPath(samples) : samples;
  expect(grid.startsWith(path.join(clone, 'runs', runId!, 'samples'))).toBe(true);
  expect(readFileSync(grid).subarray(1, 4).toString()).toBe('PNG');
  // The final evaluation on the digits' held-out split and built-in classifier, and its plots.
  expect(start.stdout).toMatch(
    /^evaluation: step 20: bits\/dim [\d.]+ ± [\d.]+ \| classifier FID [\d.]+ \| confident \d+%/m,
  );
  const plots = /^plots: +(\S+)$/m.exec(start.stdout)?.[1] ?? '';
  expect(plots).toBe(path.join(clone, 'runs', runId!, 'plots', 'index.html'));
  expect(existsSync(path.join(clone, 'runs', runId!, 'plots', 'metrics.png'))).toBe(true);
  // The first-use install made this clone's native backend link and the trainer runs on it.
  expect(start.stderr).toMatch(/\[tfjs-native\] verified: TF 2\.\d+\.\d+, on (CPU|GPU)/);
  const workerLog = readFileSync(path.join(clone, '.cache', 'local-stack', 'worker.log'), 'utf8');
  expect(workerLog).toMatch(
    /backend: tensorflow \(tfjs-node \(offline build\), TF 2\.\d+\.\d+ \w+ build, on /,
  );
}, 1_200_000);
