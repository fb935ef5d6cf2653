/**
 * A trainer of a new version must resume runs whose checkpoints an older version wrote. Each format
 * version's fixture (test/fixtures/checkpoints/v<N>-micro, written by test/helpers/checkpoint-fixture.ts
 * with the code of its time) is loaded by today's code and must give back exactly the state it holds,
 * and training must go on from it.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHECKPOINT_VERSION, READABLE_VERSIONS, loadCheckpointDir } from '../core/checkpoint/checkpoint';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { Trainer } from '../core/train/trainer';
import { LocalDirStore } from '../store';
import { fixtureImages, stateDigests } from './helpers/checkpoint-fixture';

const FIXTURES = join(__dirname, 'fixtures', 'checkpoints');

/** What the v1 fixture holds, as its writer printed it (see the file comment). */
const V1 = {
  dir: join(FIXTURES, 'v1-micro'),
  step: 2,
  paramCount: 5023,
  model: {
    imageSize: 8,
    inChannels: 3,
    ch: 4,
    chMult: [1, 1],
    numResBlocks: 1,
    attnResolutions: [4],
    dropout: 0.1,
    groups: 2,
  },
  digests: {
    params: 'c7dba4ea08a15dc14ceadffb9f34fc3abe529bddbfa5798f7a05dec2e661029a',
    ema: '37d69039ef90ef3d6bb14d18035eca0c36f0d3b4d5fd67763dd35ca0e4237ae4',
    adamM: '2be7e60f97dc5977e6e068789eed345ac7ae95172f6efc70fbe116e6bb814716',
    adamV: '535483878d74face894262b60ed73bf257ef9057bd9e6068f6a102e52e78f2c7',
  },
};

beforeAll(async () => {
  await tf.setBackend('cpu');
});

test('every format version this build reads has a checked-in fixture, the current one included', () => {
  expect(READABLE_VERSIONS).toContain(CHECKPOINT_VERSION);
  for (const version of READABLE_VERSIONS) {
    const manifest = JSON.parse(readFileSync(join(FIXTURES, `v${version}-micro`, 'manifest.json'), 'utf8'));
    expect(manifest.version).toBe(version);
  }
});

test('the version 1 fixture loads with exactly the state it was written with', async () => {
  const loaded = await loadCheckpointDir(V1.dir);
  expect(loaded.manifest.version).toBe(1);
  expect(loaded.state.step).toBe(V1.step);
  expect(loaded.manifest.paramCount).toBe(V1.paramCount);
  expect(loaded.config.model).toEqual(V1.model);
  expect(stateDigests(loaded.state)).toEqual(V1.digests);
  // Two Adam steps from a zero start: the moments are non-zero and the second moment non-negative.
  expect(loaded.state.adamM.some((v) => v !== 0)).toBe(true);
  expect(loaded.state.adamV.every((v) => v >= 0)).toBe(true);
});

test('a run resumes from the version 1 fixture through the repository and trains on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddpm-compat-'));
  try {
    const store = new LocalDirStore(dir);
    const repo = new CheckpointRepository(store, 'old-run');
    cpSync(V1.dir, join(dir, repo.keyFor(V1.step)), { recursive: true });
    const { config } = await loadCheckpointDir(V1.dir);
    const resume = await repo.newestValid(config);
    expect(resume?.skipped).toEqual([]);
    expect(stateDigests(resume!.checkpoint.state)).toEqual(V1.digests);

    const trainer = new Trainer({ config, data: fixtureImages(), state: resume!.checkpoint.state });
    const r = await trainer.step();
    const continued = await trainer.hostState();
    trainer.dispose();
    expect(r.step).toBe(V1.step + 1);
    expect(Number.isFinite(r.loss)).toBe(true);
    // And the newer build's own checkpoint of the continued run reads back.
    await repo.save(continued, config);
    expect((await repo.newestValid(config))?.checkpoint.state.step).toBe(V1.step + 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
