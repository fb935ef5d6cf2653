/**
 * First-use install of the Temporal CLI (infra/install-tools.sh through infra/setup): a `temporal` on
 * PATH or a finished build is used at once and quietly; without Go the error says in one line how to get
 * the CLI; a build that fails or is killed names its step and log and leaves nothing a later run trusts;
 * long steps print progress lines with elapsed times. Real bash, real Go: the failing build is a real
 * `go install` with the module proxy switched off (no network), the killed one a real build killed with
 * SIGKILL. The cold build itself (minutes) is not repeated here; pretest and the quick-start check use it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MissingToolError, resolveTool, toolsBinDir } from '../infra/local/binaries';
import { ensureTemporalCli } from '../infra/setup/ensure-temporal-cli';
import { InstallError } from '../infra/setup/run-installer';

const REPO = path.resolve(__dirname, '..');
const INSTALL_TOOLS = path.join(REPO, 'infra', 'install-tools.sh');
let scratch: string;

beforeAll(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'install-tools-test-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** PATH without any folder that holds `go` or `temporal`: a machine with neither. */
function pathWithout(...tools: string[]): string {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((dir) => !tools.some((tool) => existsSync(path.join(dir, tool))))
    .join(path.delimiter);
}

/** PATH with a `temporal` on it (a user's own install). */
function pathWithTemporal(binary: string): string {
  const dir = path.join(scratch, 'user-bin');
  mkdirSync(dir, { recursive: true });
  if (!existsSync(path.join(dir, 'temporal'))) symlinkSync(binary, path.join(dir, 'temporal'));
  return [dir, pathWithout('temporal')].join(path.delimiter);
}

function freshCache(name: string): string {
  const dir = path.join(scratch, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

test('a temporal on PATH is used as it is, without running the installer', async () => {
  const cached = resolveTool('temporal');
  const lines: string[] = [];
  const env = { ...process.env, PATH: pathWithTemporal(cached), DDPM_TOOLS_CACHE: freshCache('unused') };
  await expect(ensureTemporalCli((l) => lines.push(l), { env })).resolves.toBe(
    path.join(scratch, 'user-bin', 'temporal'),
  );
  expect(lines).toEqual([]);
  expect(readdirSync(path.join(scratch, 'unused'))).toEqual([]);
});

test('a finished build in the tools cache is found quietly, without building', async () => {
  const lines: string[] = [];
  const env = { ...process.env, PATH: pathWithout('temporal') };
  const started = Date.now();
  const binary = await ensureTemporalCli((l) => lines.push(l), { env });
  const tookMs = Date.now() - started;
  expect(binary).toBe(path.join(toolsBinDir(env), 'temporal'));
  expect(lines).toEqual([]);
  // Generous for a loaded machine: the check is one bash process reading a stamp, not a build.
  expect(tookMs).toBeLessThan(5_000);
});

test('without Go or a temporal, the error says in one line how to get the Temporal CLI', async () => {
  const env = { ...process.env, PATH: pathWithout('go', 'temporal'), DDPM_TOOLS_CACHE: freshCache('no-go') };
  const error = await ensureTemporalCli(() => {}, { env }).catch((e: Error) => e);
  expect(error).toBeInstanceOf(InstallError);
  const message = (error as Error).message;
  expect(message.split('\n')).toHaveLength(1);
  expect(message).toMatch(/Temporal CLI is not on PATH and Go is not installed/);
  expect(message).toContain('https://docs.temporal.io/cli');
  expect(message).toContain('https://go.dev/dl/');
  expect(message).toContain('TEMPORAL_ADDRESS');
});

test('a failed build names its step and log, and leaves no binary or stamp behind', async () => {
  const cache = freshCache('failing');
  // A real build failure: the module proxy off and an empty module cache leave Go nothing to build from.
  const env = { ...process.env, PATH: pathWithout('temporal'), DDPM_TOOLS_CACHE: cache, GOPROXY: 'off' };
  const lines: string[] = [];
  const error = await ensureTemporalCli((l) => lines.push(l), { env }).catch((e: Error) => e);
  const logFile = path.join(cache, 'logs', 'go-install-temporal.log');
  expect(error).toBeInstanceOf(InstallError);
  expect((error as Error).message).toMatch(
    new RegExp(
      `^step 'go-install-temporal' failed after \\d+ s \\(full log: ${logFile}\\); ` +
        `fix the cause above and re-run ${INSTALL_TOOLS}\\.$`,
    ),
  );
  expect(lines[0]).toMatch(/^\[install-tools\] temporal v1\.5\.1: building with go install/);
  expect(existsSync(logFile)).toBe(true);
  expect(existsSync(path.join(cache, 'bin', 'temporal'))).toBe(false);
  expect(existsSync(path.join(cache, 'bin', '.temporal.version'))).toBe(false);
  expect(() => resolveTool('temporal', '', path.join(cache, 'bin'))).toThrow(MissingToolError);
});

test('a build killed midway leaves nothing that the next run trusts', async () => {
  const cache = freshCache('killed');
  const env = {
    ...process.env,
    PATH: pathWithout('temporal'),
    DDPM_TOOLS_CACHE: cache,
    DDPM_INSTALL_PROGRESS_SECONDS: '1',
  };
  const child = spawn('bash', [INSTALL_TOOLS, 'temporal'], {
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  // Kill the whole build (bash, go and its compilers) once it has made progress: downloading modules.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no progress line within 120 s: ${output}`)), 120_000);
    child.stdout.on('data', () => {
      if (/go-install-temporal: \d+ s, [1-9]\d* modules downloaded/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  process.kill(-child.pid!, 'SIGKILL');
  await new Promise((resolve) => child.once('close', resolve));
  expect(existsSync(path.join(cache, 'bin', 'temporal'))).toBe(false);
  expect(existsSync(path.join(cache, 'bin', '.temporal.version'))).toBe(false);
  // The next run builds again rather than trusting anything: offline here, so that build fails.
  const rerun = spawnSync('bash', [INSTALL_TOOLS, 'temporal'], {
    env: { ...env, GOPROXY: 'off' },
    encoding: 'utf8',
  });
  expect(rerun.status).toBe(1);
  expect(rerun.stdout).not.toMatch(/already built/);
  expect(rerun.stderr).toMatch(/ERROR: step 'go-install-temporal' failed/);
  expect(existsSync(path.join(cache, 'bin', 'temporal'))).toBe(false);
}, 240_000);

test('a long step prints its start, a progress line with the elapsed time, and its end', () => {
  const logDir = freshCache('progress-logs');
  const script = [
    `source ${JSON.stringify(path.join(REPO, 'infra', 'install-lib.sh'))}`,
    `LOG_TAG=demo LOG_DIR=${JSON.stringify(logDir)}`,
    `count() { printf '%s lines' "$(wc -l <"$1")"; }`,
    `run_step slow 'a slow step' count bash -c 'for i in 1 2 3 4; do echo tick; sleep 1; done'`,
    `run_step broken 'a failing step' '' bash -c 'echo some detail; exit 3'`,
  ].join('\n');
  const r = spawnSync('bash', ['-c', script], {
    env: { ...process.env, DDPM_INSTALL_PROGRESS_SECONDS: '1' },
    encoding: 'utf8',
  });
  const lines = r.stdout.trim().split('\n');
  expect(lines[0]).toBe('[demo] a slow step...');
  expect(lines).toEqual(
    expect.arrayContaining([expect.stringMatching(/^\[demo\] {3}slow: [1-4] s, [1-4] lines$/)]),
  );
  expect(lines).toEqual(
    expect.arrayContaining([expect.stringMatching(/^\[demo\] {3}slow: done in [4-9] s$/)]),
  );
  expect(lines[lines.length - 1]).toBe('[demo] a failing step...');
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('some detail');
  expect(r.stderr).toMatch(
    new RegExp(`\\[demo\\] ERROR: step 'broken' failed after \\d+ s \\(full log: ${logDir}/broken\\.log\\)`),
  );
});

test('a free-space check names the folder, what it needs and what is free', () => {
  const dir = freshCache('space');
  writeFileSync(path.join(dir, 'x'), '');
  const r = spawnSync(
    'bash',
    [
      '-c',
      `source ${JSON.stringify(path.join(REPO, 'infra', 'install-lib.sh'))}; LOG_TAG=demo; ` +
        `require_free_space ${JSON.stringify(dir)} 99999999 'a huge build'; echo passed`,
    ],
    { encoding: 'utf8' },
  );
  expect(r.status).toBe(1);
  expect(r.stdout).not.toContain('passed');
  expect(r.stderr).toMatch(
    new RegExp(
      `^\\[demo\\] ERROR: a huge build needs about 97657 GB free in ${dir}, but only \\d+\\.\\d GB is free; `,
    ),
  );
});
