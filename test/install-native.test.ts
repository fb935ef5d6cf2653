/**
 * infra/tfjs-native/install.sh: which build it installs (CUDA where an NVIDIA driver new enough for CUDA
 * 12 is, CPU otherwise, or what --cpu/--cuda/TFJS_NATIVE_VARIANT force), that any number of projects can
 * share one cache (each loads tfjs-node with its own tfjs-core, and deleting one breaks no other), and
 * that a machine where it cannot be built (no python3) goes on with the next backend, saying so in one
 * line.
 *
 * The driver is simulated: FAKE driver-version files stand in for /proc/driver/nvidia/version (this
 * machine has no GPU), read through TFJS_NATIVE_NVIDIA_VERSION_FILE. Nothing here downloads: the
 * CUDA build (3.5 GB) is only selected, and the shared-cache tests use the cache that pretest filled.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultCacheRoot } from '../infra/cache-root';
import { prepareNativeBackend } from '../infra/setup/ensure-native-backend';

const REPO = path.resolve(__dirname, '..');
const INSTALL = path.join(REPO, 'infra', 'tfjs-native', 'install.sh');
const SHARED_CACHE = process.env.TFJS_NATIVE_CACHE || path.join(defaultCacheRoot(), 'tfjs-native');
let scratch: string;

beforeAll(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'install-native-test-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A FAKE /proc/driver/nvidia/version: this machine has no NVIDIA driver to read. */
function fakeDriverFile(name: string, firstLine: string): string {
  const file = path.join(scratch, `FAKE-nvidia-version-${name}`);
  writeFileSync(file, `${firstLine}\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n`);
  return file;
}

function printVariant(driverFile: string, args: string[] = [], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync('bash', [INSTALL, '--print-variant', ...args], {
    env: { ...process.env, TFJS_NATIVE_VARIANT: '', ...env, TFJS_NATIVE_NVIDIA_VERSION_FILE: driverFile },
    encoding: 'utf8',
  });
  return { status: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

describe('build selection (simulated NVIDIA drivers)', () => {
  const driver550 = () =>
    fakeDriverFile(
      '550',
      'NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024',
    );
  const openDriver580 = () =>
    fakeDriverFile(
      'open-580',
      'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Jul 15 2025',
    );
  const driver470 = () =>
    fakeDriverFile(
      '470',
      'NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.82.01  Wed Oct 27 04:50:06 UTC 2021',
    );
  const noDriver = () => path.join(scratch, 'FAKE-no-such-driver-file');

  test('no driver: the CPU build', () => {
    expect(printVariant(noDriver())).toEqual({ status: 0, out: 'cpu: no NVIDIA driver found', err: '' });
  });

  test('a CUDA 12 capable driver (proprietary or open kernel module): the CUDA build', () => {
    expect(printVariant(driver550()).out).toBe('cuda: NVIDIA driver 550.54.14 found');
    expect(printVariant(openDriver580()).out).toBe('cuda: NVIDIA driver 580.65.06 found');
  });

  test('a driver too old for CUDA 12: the CPU build, saying why the GPU stays unused', () => {
    expect(printVariant(driver470()).out).toBe(
      'cpu: NVIDIA driver 470.82.01 is too old for CUDA 12 (needs >= 525.60.13), so the GPU stays unused: ' +
        'update the driver to train on it',
    );
  });

  test('--cpu and --cuda force a build; --cuda fails clearly where the GPU could not run it', () => {
    expect(printVariant(driver550(), ['--cpu']).out).toBe(
      'cpu: CPU build requested (NVIDIA driver 550.54.14 present)',
    );
    expect(printVariant(driver550(), ['--cuda']).out).toBe(
      'cuda: CUDA build requested (NVIDIA driver 550.54.14)',
    );
    expect(printVariant(driver470(), ['--cuda'])).toEqual({
      status: 1,
      out: '',
      err:
        '[tfjs-native] ERROR: --cuda: NVIDIA driver 470.82.01 is too old for CUDA 12 (needs >= 525.60.13); ' +
        'update the driver, or use --cpu.',
    });
    // Without any driver the CUDA build can still be installed (it runs on the CPU): an image, or CI.
    expect(printVariant(noDriver(), ['--cuda'])).toEqual({
      status: 0,
      out: 'cuda: CUDA build requested; no NVIDIA driver found, so it runs on the CPU until one is installed',
      err: '',
    });
  });

  test('TFJS_NATIVE_VARIANT forces a build too, and a wrong value is refused', () => {
    expect(printVariant(driver550(), [], { TFJS_NATIVE_VARIANT: 'cpu' }).out).toMatch(
      /^cpu: CPU build requested/,
    );
    expect(printVariant(noDriver(), [], { TFJS_NATIVE_VARIANT: 'auto' }).out).toBe(
      'cpu: no NVIDIA driver found',
    );
    expect(printVariant(noDriver(), [], { TFJS_NATIVE_VARIANT: 'gpu' })).toEqual({
      status: 1,
      out: '',
      err: "[tfjs-native] ERROR: TFJS_NATIVE_VARIANT must be auto, cpu or cuda, not 'gpu'",
    });
  });
});

/**
 * A project as the installer sees one: its own infra/ scripts and its own copies of the TF.js packages
 * (hard links: separate module instances at separate paths); other npm packages are linked to the repo's.
 */
function makeProject(name: string): string {
  const root = path.join(scratch, name);
  mkdirSync(path.join(root, 'node_modules'), { recursive: true });
  cpSync(path.join(REPO, 'infra', 'install-lib.sh'), path.join(root, 'infra', 'install-lib.sh'));
  cpSync(path.join(REPO, 'infra', 'tfjs-native'), path.join(root, 'infra', 'tfjs-native'), {
    recursive: true,
  });
  for (const entry of readdirSync(path.join(REPO, 'node_modules'))) {
    if (entry === '@tensorflow' || entry.startsWith('.')) continue;
    symlinkSync(path.join(REPO, 'node_modules', entry), path.join(root, 'node_modules', entry));
  }
  const r = spawnSync('cp', [
    '-al',
    path.join(REPO, 'node_modules', '@tensorflow'),
    path.join(root, 'node_modules'),
  ]);
  expect(r.status).toBe(0);
  return root;
}

function install(project: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [path.join(project, 'infra', 'tfjs-native', 'install.sh')], {
      env: { ...process.env, TFJS_NATIVE_CACHE: SHARED_CACHE },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('close', (code) => resolve({ code, output }));
  });
}

/** Loads the project's tfjs-node link in a fresh Node process, as the project's backend loader does. */
function loadIn(project: string): { tfjsCore: string; backend: string; product: number } {
  const script = `
    const path = require('path');
    const dir = path.join(process.cwd(), '.cache/tfjs-native-link/node_modules/@tensorflow/tfjs-node');
    require(dir);
    const tf = require('@tensorflow/tfjs-core');
    tf.setBackend('tensorflow').then(() => {
      const product = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0];
      console.log(JSON.stringify({
        tfjsCore: require.resolve('@tensorflow/tfjs-core', { paths: [dir] }),
        backend: tf.getBackend(),
        product,
      }));
    });`;
  const r = spawnSync('node', ['-e', script], {
    cwd: project,
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
  });
  if (r.status !== 0) throw new Error(`loading tfjs-node in ${project} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe('one cache shared by several projects', () => {
  test('two projects installing at once each get their own tfjs-core; deleting one leaves the other working', async () => {
    const [a, b] = [makeProject('project-a'), makeProject('project-b')];
    const results = await Promise.all([install(a), install(b)]);
    for (const r of results) {
      expect(r).toEqual({
        code: 0,
        output: expect.stringMatching(/\[tfjs-native\] verified: TF 2\.\d+\.\d+, on CPU/),
      });
    }
    // The shared cache holds tfjs-node's build and no TF.js package of any project.
    const variant = /variant=(\w+)/.exec(
      readFileSync(path.join(a, '.cache', 'tfjs-native-link', '.ready'), 'utf8'),
    )![1];
    const build = readdirSync(SHARED_CACHE).find(
      (d) => d.startsWith('tfjs-node-') && d.endsWith(`-${variant}`),
    )!;
    expect(readdirSync(path.join(SHARED_CACHE, build, 'node_modules', '@tensorflow'))).toEqual(['tfjs-node']);

    for (const project of [a, b]) {
      expect(loadIn(project)).toEqual({
        tfjsCore: path.join(project, 'node_modules', '@tensorflow', 'tfjs-core', 'dist', 'tf-core.node.js'),
        backend: 'tensorflow',
        product: 11,
      });
    }
    rmSync(a, { recursive: true, force: true });
    expect(loadIn(b)).toMatchObject({ backend: 'tensorflow', product: 11 });
    // A finished project is checked in a blink, without loading TensorFlow.
    const again = spawnSync('bash', [path.join(b, 'infra', 'tfjs-native', 'install.sh'), '--if-needed'], {
      env: { ...process.env, TFJS_NATIVE_CACHE: SHARED_CACHE },
      encoding: 'utf8',
    });
    expect({ status: again.status, out: again.stdout, err: again.stderr }).toEqual({
      status: 0,
      out: '',
      err: '',
    });
  }, 300_000);
});

describe('a machine that cannot build the native backend', () => {
  /** PATH of this machine minus python (a folder of links to every other command). */
  function pathWithoutPython(): string {
    const bin = path.join(scratch, 'no-python-bin');
    mkdirSync(bin, { recursive: true });
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      let entries: string[] = [];
      try {
        entries = readdirSync(dir);
      } catch {
        continue;
      }
      for (const entry of entries) {
        if (/^python/.test(entry) || existsSync(path.join(bin, entry))) continue;
        symlinkSync(path.join(dir, entry), path.join(bin, entry));
      }
    }
    return bin;
  }

  test("'auto' goes on with the next backend and says so in one line; '--backend tensorflow' stops", async () => {
    const project = makeProject('project-no-python');
    const cache = path.join(scratch, 'cache-no-python');
    const env = {
      ...process.env,
      PATH: pathWithoutPython(),
      TFJS_NATIVE_CACHE: cache,
      TFJS_NATIVE_NVIDIA_VERSION_FILE: path.join(scratch, 'FAKE-no-such-driver-file'),
    };
    const lines: string[] = [];
    await prepareNativeBackend('auto', (l) => lines.push(l), { repoRoot: project, env });
    expect(lines).toEqual([
      expect.stringMatching(/^\[tfjs-native\] cpu build of TensorFlow 2\.\d+\.\d+: no NVIDIA driver found/),
      'the native TensorFlow backend could not be installed, so the trainer uses the next backend that starts ' +
        '(webgpu on a GPU, else wasm, several times slower): python3 is not on PATH; it is needed for pip ' +
        '(wheel download) and node-gyp.',
    ]);
    await expect(prepareNativeBackend('tensorflow', () => {}, { repoRoot: project, env })).rejects.toThrow(
      /^--backend tensorflow: the native backend could not be installed: python3 is not on PATH/,
    );
    // Nothing was left that a later run could mistake for an install.
    expect(existsSync(path.join(project, '.cache', 'tfjs-native-link'))).toBe(false);
    expect(existsSync(cache) ? readdirSync(cache) : []).toEqual([]);
    // Backends that need no install are not held up by it.
    await expect(
      prepareNativeBackend('wasm', () => lines.push('unexpected'), { repoRoot: project, env }),
    ).resolves.toBeUndefined();
    expect(lines).toHaveLength(2);
  });
});
