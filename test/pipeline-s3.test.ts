/**
 * A run whose dataset and artifacts live in S3 (a real versitygw server) survives the S3 server being
 * down for 20 s mid-run: uploads retry, the trainer keeps heartbeating, the run finishes with the
 * uninterrupted weights.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { VersityGw } from '../infra/local';
import { openStore } from '../store';
import {
  PipelineHarness,
  microConfig,
  sameBits,
  sleep,
  uninterruptedParams,
  writeMicroDataset,
} from './helpers/pipeline';

jest.setTimeout(300_000);

const TOTAL = 60;
const EVERY = 20;
let h: PipelineHarness;
let gw: VersityGw;

beforeAll(async () => {
  h = await PipelineHarness.start();
  gw = await VersityGw.start({ buckets: ['ddpm'] });
  // The store is reached through the standard AWS environment, in this process and in the trainers.
  Object.assign(process.env, gw.s3Env());
});

afterAll(async () => {
  await h?.stop();
  await gw?.dispose();
});

test('the S3 server down for 20 s mid-run: uploads retry and the run finishes with the uninterrupted weights', async () => {
  const config = microConfig(TOTAL);
  const localDataset = await writeMicroDataset(join(h.workdir, 'data'));
  const bucket = openStore('s3://ddpm');
  for (const f of readdirSync(localDataset))
    await bucket.put(`datasets/micro/${f}`, readFileSync(join(localDataset, f)));
  await initBackend('tensorflow');
  const reference = await uninterruptedParams(config, localDataset);

  const runId = 's3-outage';
  const storeUri = 's3://ddpm/runs';
  const store = openStore(storeUri);
  const trainer = h.spawnTrainer(gw.s3Env());
  await trainer.ready();
  const handle = await h.startRun(h.input(runId, storeUri, 's3://ddpm/datasets/micro', config, EVERY));
  const repo = new CheckpointRepository(store, runId);
  await h.waitFor('the first checkpoint in S3', async () => (await repo.listSteps()).includes(EVERY));

  await gw.stop();
  const downAt = Date.now();
  await sleep(20_000);
  await gw.start();
  const outageSeconds = (Date.now() - downAt) / 1000;

  const result = await handle.result();
  expect(outageSeconds).toBeGreaterThanOrEqual(20);
  expect(result.finalStep).toBe(TOTAL);
  expect(await repo.listSteps()).toEqual([TOTAL, 2 * EVERY, EVERY]);
  expect(sameBits(await h.finalParams(storeUri, runId, TOTAL), reference)).toBe(true);
  expect(result.sampleKey).toBe(`${runId}/samples/${String(TOTAL).padStart(9, '0')}.png`);
  expect(
    Buffer.from(await store.get(result.sampleKey as string))
      .subarray(1, 4)
      .toString('latin1'),
  ).toBe('PNG');
  await trainer.kill('SIGTERM');
});
