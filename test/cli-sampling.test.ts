/**
 * `sample` and `inpaint` run locally, as a user runs them (child processes), on a checkpoint in a real
 * local-directory store: their help, outputs, progress, and one-line errors for bad input. The same
 * commands on the trainer pool (--on-pool) are exercised by cli.test.ts against the local stack.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PNG } from 'pngjs';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { Purpose, Rng } from '../core/rng';
import { encodeImagePng } from '../core/sampling';
import { Trainer } from '../core/train/trainer';
import { LocalDirStore } from '../store';
import { microConfig } from './helpers/pipeline';

jest.setTimeout(180_000);

const REPO = path.resolve(__dirname, '..');
const TSX = path.join(REPO, 'node_modules', '.bin', 'tsx');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'ddpm-cli-sampling-'));
const storeDir = path.join(scratch, 'store');
const RUN = 'r';

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(command: 'sample' | 'inpaint', args: string[]): Promise<Finished> {
  const child = spawn(TSX, [path.join(REPO, 'cli', `${command}.ts`), ...args], { cwd: scratch });
  const out: Finished = { code: null, stdout: '', stderr: '' };
  child.stdout.on('data', (b: Buffer) => (out.stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out.stderr += b.toString()));
  return new Promise((resolve) =>
    child.once('close', (code) => {
      out.code = code;
      resolve(out);
    }),
  );
}

function expectSuccess(r: Finished): void {
  if (r.code !== 0) throw new Error(`exit status ${r.code}; stderr:\n${r.stderr.slice(-3000)}`);
}

function expectOneLineError(r: Finished, pattern: RegExp): void {
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines.at(-1)).toMatch(/^error: /);
  expect(lines.at(-1)).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

const image = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 53) % 256);
const keep = Uint8Array.from({ length: 64 }, (_, p) => (Math.floor(p / 8) < 4 ? 1 : 0));

beforeAll(async () => {
  await initBackend('cpu');
  const config = microConfig(7);
  const rng = new Rng([41, Purpose.Evaluation]);
  const pixels = Uint8Array.from({ length: 4 * 192 }, () => rng.int(256));
  const trainer = new Trainer({ config, data: { count: 4, height: 8, width: 8, channels: 3, pixels } });
  const state = await trainer.hostState();
  state.step = 7;
  state.ema = Float32Array.from(state.params, (v) => v + 0.05 * rng.normal());
  await new CheckpointRepository(new LocalDirStore(storeDir), RUN).save(state, config);
  trainer.dispose();
  writeFileSync(path.join(scratch, 'image.png'), encodeImagePng(image, { height: 8, width: 8, channels: 3 }));
  writeFileSync(
    path.join(scratch, 'mask.png'),
    encodeImagePng(
      Uint8Array.from(keep, (k) => k * 255),
      { height: 8, width: 8, channels: 1 },
    ),
  );
  writeFileSync(
    path.join(scratch, 'big.png'),
    encodeImagePng(new Uint8Array(81), { height: 9, width: 9, channels: 1 }),
  );
  writeFileSync(path.join(scratch, 'broken.png'), 'not a png');
  writeFileSync(
    path.join(scratch, 'white.png'),
    encodeImagePng(new Uint8Array(64).fill(255), { height: 8, width: 8, channels: 1 }),
  );
});

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('help names every option and says that x0 clipping is on and which mask colour keeps', async () => {
  const [sample, inpaint] = await Promise.all([cli('sample', ['--help']), cli('inpaint', ['--help'])]);
  expectSuccess(sample);
  for (const o of [
    '--checkpoint',
    '--sampler',
    '--steps',
    '--count',
    '--batch',
    '--seed',
    '--out',
    '--on-pool',
    '--no-clip',
  ]) {
    expect(sample.stdout).toContain(o);
  }
  expect(sample.stdout).toMatch(/x0 clipping/);
  expectSuccess(inpaint);
  for (const o of [
    '--image',
    '--mask',
    '--out',
    '--checkpoint',
    '--steps',
    '--jump-length',
    '--resample',
    '--on-pool',
  ]) {
    expect(inpaint.stdout).toContain(o);
  }
  expect(inpaint.stdout).toMatch(/white \(>= 128\) keeps the pixel, black is filled/);
});

test('sample writes the set to the store and --out, with progress, and prints where it is', async () => {
  const out = path.join(scratch, 'out');
  const r = await cli('sample', [
    ...['--run-id', RUN, '--store', storeDir, '--count', '5', '--batch', '2', '--steps', '4'],
    ...['--seed', '3', '--backend', 'wasm', '--out', out],
  ]);
  expectSuccess(r);
  const setDir = path.join(storeDir, RUN, 'samples', '000000007', 'ddim4-seed3-n5');
  expect(r.stdout.trim()).toBe(`file://${setDir}`);
  expect(r.stderr).toMatch(
    /^run r: checkpoint of step 7 \(preset test-micro\); 5 images, ddim 4 steps, batch 2, seed 3$/m,
  );
  expect(r.stderr).toMatch(/^sample 5\/5 \| img\/s [\d.]+ \| ETA/m);
  expect(readdirSync(path.join(setDir, 'images'))).toHaveLength(5);
  expect(readdirSync(path.join(setDir, 'chunks')).sort()).toEqual(
    ['000000000', '000000002', '000000004'].flatMap((c) => [`${c}.json`, `${c}.u8`]),
  );
  const manifest = JSON.parse(readFileSync(path.join(setDir, 'manifest.json'), 'utf8'));
  expect(manifest).toMatchObject({
    count: 5,
    batch: 2,
    seed: 3,
    sampler: { kind: 'ddim', steps: 4, eta: 0, clip: true },
  });
  for (const name of readdirSync(path.join(setDir, 'images'))) {
    expect(
      readFileSync(path.join(out, 'images', name)).equals(readFileSync(path.join(setDir, 'images', name))),
    ).toBe(true);
  }
  expect(readFileSync(path.join(out, 'grid.png')).equals(readFileSync(path.join(setDir, 'grid.png')))).toBe(
    true,
  );
});

test('ddpm takes all the steps, --no-images skips per-image PNGs', async () => {
  const r = await cli('sample', [
    ...[
      '--run-id',
      RUN,
      '--store',
      storeDir,
      '--count',
      '2',
      '--sampler',
      'ddpm',
      '--no-images',
      '--backend',
      'wasm',
    ],
  ]);
  expectSuccess(r);
  const setDir = r.stdout.trim().replace(/^file:\/\//, '');
  expect(path.basename(setDir)).toMatch(/^ddpm100-seed\d+-n2$/);
  expect(existsSync(path.join(setDir, 'images'))).toBe(false);
  expect(existsSync(path.join(setDir, 'grid.png'))).toBe(true);
});

test('sample: bad requests are one-line errors', async () => {
  const base = ['--run-id', RUN, '--store', storeDir];
  const cases: [string[], RegExp][] = [
    [
      ['--sampler', 'ddpm', '--steps', '10'],
      /ddpm \(ancestral\) sampling takes all 100 timesteps of this run; use --sampler ddim/,
    ],
    [['--steps', '500'], /DDIM steps must be a whole number from 1 to 100/],
    [['--checkpoint', '3'], /run r has no usable checkpoint at step 3 \(.*\); its checkpoints: 7$/],
    [['--chunk', '4'], /--chunk only applies with --on-pool/],
    [['--sampler', 'ddpm', '--eta', '0.5'], /--eta applies to --sampler ddim only/],
    [['--sampler', 'plms'], /--sampler .*'plms' is invalid/],
  ];
  const results = await Promise.all(cases.map(([args]) => cli('sample', [...base, ...args])));
  results.forEach((r, i) => expectOneLineError(r, cases[i][1]));
});

test('inpaint writes a PNG that keeps the kept pixels exactly', async () => {
  const out = path.join(scratch, 'filled.png');
  const r = await cli('inpaint', [
    ...['--run-id', RUN, '--store', storeDir, '--image', 'image.png', '--mask', 'mask.png', '--out', out],
    ...['--steps', '10', '--resample', '2', '--backend', 'wasm'],
  ]);
  expectSuccess(r);
  expect(r.stdout.trim()).toBe(out);
  expect(r.stderr).toMatch(/RePaint 10 steps, jump 1, 2 resamplings \(\d+ model evaluations\)/);
  expect(r.stderr).toMatch(/^inpaint (\d+)\/\1 \| steps\/s [\d.]+ \| ETA/m);
  const png = PNG.sync.read(readFileSync(out));
  expect([png.width, png.height]).toEqual([8, 8]);
  let changed = 0;
  for (let p = 0; p < 64; p++) {
    for (let c = 0; c < 3; c++) {
      const v = png.data[p * 4 + c];
      if (keep[p]) expect(v).toBe(image[p * 3 + c]);
      else if (v !== image[p * 3 + c]) changed++;
    }
  }
  expect(changed).toBeGreaterThan(48);
});

test('inpaint: missing files, broken PNGs and size mismatches are one-line errors', async () => {
  const base = ['--run-id', RUN, '--store', storeDir];
  const cases: [string[], RegExp][] = [
    [['--image', 'none.png', '--mask', 'mask.png'], /^error: --image none\.png: no such file or directory$/],
    [
      ['--image', 'broken.png', '--mask', 'mask.png'],
      /^error: --image broken\.png: not a readable PNG \(.+\)$/,
    ],
    [
      ['--image', 'image.png', '--mask', 'big.png'],
      /^error: --mask big\.png is 9x9 but the model of run r \(preset test-micro\) takes 8x8 images$/,
    ],
    [
      ['--image', 'image.png', '--mask', 'white.png'],
      /^error: --mask white\.png is white everywhere: nothing to fill$/,
    ],
    [['--image', 'image.png', '--mask', 'mask.png', '--jump-length', '0'], /--jump-length .*'0' is invalid/],
  ];
  const results = await Promise.all(cases.map(([args]) => cli('inpaint', [...base, ...args])));
  results.forEach((r, i) => expectOneLineError(r, cases[i][1]));
});
