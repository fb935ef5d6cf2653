/**
 * prepareDataset keeps heartbeating while it reads, not only between phases: a large dataset over a
 * slow link takes longer than any heartbeat timeout. Run in Temporal's activity test environment (the
 * SDK's own harness for one activity) against a real S3 server and real files.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareDataset } from '../activities/prepare-dataset';
import { VersityGw } from '../infra/local';
import { openStore } from '../store';
import type { PreparedDataset } from '../workflows/api';
import { writeMicroDataset } from './helpers/pipeline';

jest.setTimeout(120_000);

let root: string;
let gw: VersityGw;
const IMAGES = 120;
/** Enough PNGs that reading them takes many 10 ms heartbeat intervals on any machine. */
const MANY = 1500;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'prepare-dataset-'));
  gw = await VersityGw.start({ buckets: ['ddpm-data'] });
  Object.assign(process.env, gw.s3Env());
  await writeMicroDataset(join(root, 'data'), IMAGES);
  await writeMicroDataset(join(root, 'many'), MANY);
  const bucket = openStore('s3://ddpm-data');
  for (const f of readdirSync(join(root, 'data')))
    await bucket.put(`micro/${f}`, readFileSync(join(root, 'data', f)));
});

afterAll(async () => {
  await gw?.dispose();
  await rm(root, { recursive: true, force: true });
});

/** Runs prepareDataset with a short heartbeat timeout and returns every heartbeat it sent. */
async function heartbeatsOf(
  runId: string,
  dataset: string,
  count: number,
): Promise<Record<string, unknown>[]> {
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 40 });
  const beats: Record<string, unknown>[] = [];
  env.on('heartbeat', (d: unknown) => beats.push(d as Record<string, unknown>));
  const prepared = (await env.run(prepareDataset, {
    runId,
    storeUri: join(root, `store-${runId}`),
    dataset,
  })) as PreparedDataset;
  expect(prepared.count).toBe(count);
  return beats;
}

test('an S3 dataset heartbeats through its download, with the objects copied so far', async () => {
  const beats = await heartbeatsOf('from-s3', 's3://ddpm-data/micro', IMAGES);
  const downloading = beats.filter((b) => b.phase === 'downloading');
  const copied = new Set(downloading.map((b) => b.objects));
  // One beat at least after every object, each naming how far the copy is.
  for (let k = 1; k <= IMAGES; k++) expect(copied).toContain(k);
  expect(downloading.filter((b) => Number(b.objects) > 0).every((b) => b.of === IMAGES)).toBe(true);
  expect(downloading.at(-1)?.bytes).toBeGreaterThan(0);
});

test('reading local files heartbeats while the reader runs, at a quarter of the heartbeat timeout', async () => {
  const beats = await heartbeatsOf('from-disk', join(root, 'many'), MANY);
  // 1500 PNGs take far longer than a few 10 ms beats; before, 'reading' was sent once, before the read.
  expect(beats.filter((b) => b.phase === 'reading').length).toBeGreaterThan(2);
  expect(beats.some((b) => b.phase === 'writing')).toBe(true);
});
