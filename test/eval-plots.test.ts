/**
 * Plots and TensorBoard files from a run's stored history: the PNG decodes, the page is self-contained,
 * the history reader keeps the newest value per step and survives a torn line, and the event files are
 * TFRecord streams holding the scalars (native backend).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { initBackend } from '../core/backend';
import type { MetricRecord } from '../core/eval/evaluate';
import { emaSeries, readRunHistory, regeneratePlots } from '../core/eval/plots';
import { tensorboardAvailable, writeTensorboardEvents } from '../core/eval/tensorboard';
import { runKeys } from '../core/store-layout';
import { openStore } from '../store';

const scratch = mkdtempSync(join(tmpdir(), 'ddpm-plots-'));
const store = openStore(scratch);
const runId = 'plots-run';

const record = (metric: MetricRecord['metric'], step: number, value: number | number[]): MetricRecord => ({
  metric,
  value,
  step,
  checkpoint: `${runId}/checkpoints/${step}`,
  sampler: metric === 'bits_per_dim' ? null : 'ddim',
  samplingSteps: metric === 'bits_per_dim' ? null : 50,
  sampleCount: 100,
  seed: 7,
  details: {},
  evaluatedAt: new Date(2026, 0, 1, 0, step).toISOString(),
});

beforeAll(async () => {
  await initBackend('auto');
  const lines = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => {
      const step = from + i + 1;
      return JSON.stringify({ step, loss: 1 / step, lr: 1e-3 * Math.min(1, step / 10) }) + '\n';
    }).join('');
  await store.put(runKeys.metrics(runId, 20), lines(0, 20));
  // A retried segment rewrote steps 15..20 in the next object, and a line was torn.
  await store.put(runKeys.metrics(runId, 40), lines(14, 40) + '{"step": 41, "lo');
  for (const step of [20, 40]) {
    const records = [
      record('bits_per_dim', step, 3 - step / 40),
      record('classifier_fid', step, 100 / step),
      record('classifier_confident_share', step, step / 50),
      record('classifier_class_histogram', step, [40, 60]),
    ];
    await store.put(
      runKeys.evalMetrics(runId, step, 'abc'),
      records.map((r) => JSON.stringify(r) + '\n').join(''),
    );
  }
});

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('the history has one point per step and every evaluation record', async () => {
  const h = await readRunHistory(store, runId);
  expect(h.train.map((p) => p.step)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  expect(h.evals).toHaveLength(8);
  expect(h.evals[0].step).toBe(20);
});

test('EMA of the loss is bias-corrected: a constant stays constant', () => {
  expect(emaSeries([2, 2, 2, 2])).toEqual([2, 2, 2, 2].map(() => expect.closeTo(2, 12)));
  const e = emaSeries([0, 10], 0.5);
  expect(e[1]).toBeCloseTo((0.5 * 0 * 0.5 + 0.5 * 10) / (1 - 0.25), 12);
});

test('plots: a PNG and a self-contained HTML page in the store', async () => {
  const r = await regeneratePlots(store, runId);
  expect(r.png).toBe(runKeys.plots(runId).png);
  const png = PNG.sync.read(Buffer.from(await store.get(r.png)));
  expect(png.width).toBe(1000);
  expect(png.height).toBeGreaterThan(900);
  // Not blank: some pixels are neither white nor one flat colour.
  const colours = new Set<number>();
  for (let i = 0; i < png.data.length; i += 4 * 97) colours.add(png.data.readUInt32BE(i));
  expect(colours.size).toBeGreaterThan(10);
  const html = await store.getText(r.html);
  expect(html).toContain('<svg');
  expect(html).not.toMatch(/<script|src="http/);
  expect(html).toContain('<td>40</td><td>2 ± </td>');
  expect(html).toContain('40 60');
});

/** Walks the TFRecord framing (u64 length, u32 crc, data, u32 crc) and returns each record's bytes. */
function tfRecords(bytes: Uint8Array): Buffer[] {
  const b = Buffer.from(bytes);
  const out: Buffer[] = [];
  let offset = 0;
  while (offset < b.length) {
    const length = Number(b.readBigUInt64LE(offset));
    out.push(b.subarray(offset + 12, offset + 12 + length));
    offset += 12 + length + 4;
  }
  expect(offset).toBe(b.length);
  return out;
}

test('TensorBoard: one event file per metrics object, written once (native backend; none without it)', async () => {
  const h = await readRunHistory(store, runId);
  if (!tensorboardAvailable()) {
    // Only tfjs-node has a summary writer; CI builds it (npm test's pretest), so this branch is for others.
    expect(await writeTensorboardEvents(store, h)).toBe(0);
    expect(await store.list(runKeys.tensorboardPrefix(runId))).toEqual([]);
    return;
  }
  expect(await writeTensorboardEvents(store, h)).toBe(4);
  expect(await writeTensorboardEvents(store, h)).toBe(0);
  const keys = await store.list(runKeys.tensorboardPrefix(runId));
  expect(keys.map((k) => k.slice(k.lastIndexOf('/') + 1))).toEqual([
    'events.out.tfevents.000000020.a-train',
    'events.out.tfevents.000000020.b-eval-4',
    'events.out.tfevents.000000040.a-train',
    'events.out.tfevents.000000040.b-eval-4',
  ]);
  const train = tfRecords(await store.get(keys[2]));
  // The file-version record, then 20 steps (21..40) of loss and learning rate.
  expect(train.length).toBe(1 + 20 * 2);
  expect(train.some((r) => r.includes('train/loss'))).toBe(true);
  const evals = tfRecords(await store.get(keys[3]));
  expect(evals.some((r) => r.includes('eval/bits_per_dim'))).toBe(true);
  expect(evals.some((r) => r.includes('eval/classifier_class_histogram/1'))).toBe(true);
});
