/**
 * How activity failures are classified (activities/failures.ts), with real errors from the real parts:
 * a trainer that diverges, an S3 server that refuses our credentials, an S3 endpoint that is down.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { ApplicationFailure } from '@temporalio/common';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { PERMANENT_ERRORS, asActivityFailure, isStoreOutage } from '../activities/failures';
import {
  CheckpointMismatchError,
  DatasetError,
  InvalidInputError,
  MicroBatchOutOfMemoryError,
  NoValidCheckpointError,
  TrainingDivergedError,
} from '../core/errors';
import { Trainer } from '../core/train/trainer';
import { VersityGw, findFreePort } from '../infra/local';
import { openStore } from '../store';
import { NON_RETRYABLE_ERRORS, STORE_UNAVAILABLE_ERROR } from '../workflows/api';
import { microConfig } from './helpers/micro-config';

jest.setTimeout(120_000);

const examples = [
  new InvalidInputError('dataset images are 8x8x3 but preset tiny expects 32x32x3'),
  new DatasetError('/data/x.bin', 'truncated record'),
  new CheckpointMismatchError('ckpt: checkpoint does not match this run (model.ch: 8 vs 16)'),
  new NoValidCheckpointError('run r', [{ step: 3, reason: 'checksum mismatch' }]),
  new TrainingDivergedError(7, NaN),
  new MicroBatchOutOfMemoryError(64, 'wasm', 'wasm: out of memory'),
];

test('every permanent core error becomes a non-retryable failure of its own type, one the workflow knows', () => {
  expect(examples.map((e) => e.constructor)).toEqual([...PERMANENT_ERRORS]);
  for (const e of examples) {
    const f = asActivityFailure(e);
    expect(f).toBeInstanceOf(ApplicationFailure);
    expect((f as ApplicationFailure).type).toBe(e.name);
    expect((f as ApplicationFailure).nonRetryable).toBe(true);
    expect((f as ApplicationFailure).message).toBe(e.message);
    expect(NON_RETRYABLE_ERRORS).toContain(e.name);
  }
  expect(NON_RETRYABLE_ERRORS).toHaveLength(PERMANENT_ERRORS.length);
});

test('a trainer whose loss stops being finite throws TrainingDivergedError, not a message to match', async () => {
  await tf.setBackend('cpu');
  const config = microConfig({
    batchSize: 2,
    microBatchSize: 2,
    seed: 2,
    learningRate: 1e30,
    warmupSteps: 0,
  });
  const data = { count: 2, height: 8, width: 8, channels: 3, pixels: new Uint8Array(2 * 192).fill(200) };
  const trainer = new Trainer({ config, data });
  let err: unknown = null;
  for (let i = 0; i < 5 && err === null; i++) await trainer.step().catch((e: unknown) => (err = e));
  trainer.dispose();
  expect(err).toBeInstanceOf(TrainingDivergedError);
  expect((err as TrainingDivergedError).step).toBe(trainer.currentStep);
  const f = asActivityFailure(err) as ApplicationFailure;
  expect([f.type, f.nonRetryable]).toEqual(['TrainingDivergedError', true]);
});

test('a dataset of the wrong image size is invalid input, refused before any step', async () => {
  const config = microConfig({ batchSize: 2, microBatchSize: 2 });
  const data = { count: 2, height: 16, width: 16, channels: 3, pixels: new Uint8Array(2 * 768) };
  expect(() => new Trainer({ config, data })).toThrow(InvalidInputError);
});

describe('store failures', () => {
  let gw: VersityGw;
  beforeAll(async () => {
    gw = await VersityGw.start({ buckets: ['ddpm-b'] });
  });
  afterAll(async () => {
    await gw?.dispose();
  });

  test('an S3 endpoint that is down is an outage: retryable StoreUnavailableError', async () => {
    // In a plain node process, as in a worker: jest's sandbox hands the SDK errors from another realm,
    // which it wraps without their error code.
    const port = await findFreePort();
    const script = `
      const { openStore } = require('./store');
      const { asActivityFailure, isStoreOutage } = require('./activities/failures');
      const store = openStore('s3://ddpm-b', { s3: {
        endpoint: 'http://127.0.0.1:${port}', retryForMs: 300, region: 'us-east-1',
        credentials: { accessKeyId: 'someone', secretAccessKey: 'something' } } });
      store.get('k').catch((err) => {
        const f = asActivityFailure(err);
        console.log(JSON.stringify({ outage: isStoreOutage(err), type: f.type, nonRetryable: f.nonRetryable, message: f.message }));
      });`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: resolve(__dirname, '..'),
      encoding: 'utf8',
    });
    const result = JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null');
    expect(result).toEqual({
      outage: true,
      type: STORE_UNAVAILABLE_ERROR,
      nonRetryable: false,
      message: expect.stringMatching(/^store unavailable: connect ECONNREFUSED 127\.0\.0\.1:\d+$/),
    });
  });

  test('wrong credentials or a missing bucket are not outages: they stay for the failure budget', async () => {
    const wrongKey = openStore('s3://ddpm-b', {
      s3: {
        endpoint: gw.endpoint,
        credentials: { accessKeyId: 'nobody', secretAccessKey: 'wrong-secret-key' },
        region: 'us-east-1',
      },
    });
    const denied = await wrongKey.get('k').catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Error);
    expect(isStoreOutage(denied)).toBe(false);
    expect(asActivityFailure(denied)).toBe(denied);

    const noBucket = openStore('s3://no-such-bucket', {
      s3: { endpoint: gw.endpoint, credentials: gw.credentials, region: 'us-east-1' },
    });
    const missing = await noBucket.put('k', 'v').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Error);
    expect(isStoreOutage(missing)).toBe(false);
  });
});
