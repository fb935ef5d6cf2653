/**
 * In-run evaluation on the real Temporal server with a real trainer process: the workflow evaluates at
 * its interval and at the end, beside training; the metrics land in the store as JSON lines, the plots
 * are drawn, and the latest numbers show in the status query, memo and search attributes. A failing
 * evaluation is reported and does not fail the run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { readShardedSplit } from '../core/data';
import { bitsPerDim } from '../core/eval/bits-per-dim';
import type { MetricRecord } from '../core/eval/evaluate';
import { runKeys } from '../core/store-layout';
import { epsModelFromWeights } from '../core/sampling';
import { noiseScheduleFor } from '../core/diffusion/schedule';
import { Purpose, Rng, hashKey } from '../core/rng';
import { openStore } from '../store';
import { SEARCH_ATTRIBUTES, TrainingRunInput } from '../workflows/api';
import { PipelineHarness, microConfig } from './helpers/pipeline';

jest.setTimeout(600_000);

let h: PipelineHarness;

beforeAll(async () => {
  await initBackend('tensorflow');
  h = await PipelineHarness.start();
  const trainer = h.spawnTrainer();
  await trainer.ready();
});

afterAll(async () => {
  await h?.stop();
});

/**
 * An MNIST-style IDX folder of 8x8 grey images in two classes (bright top half vs bright bottom half),
 * with labels and a t10k held-out split: enough for every metric of the built-in score.
 */
function writeLabelledIdx(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const rng = new Rng([31, Purpose.Evaluation]);
  const split = (prefix: string, count: number) => {
    const images = Buffer.alloc(16 + count * 64);
    images.writeUInt32BE(0x00000803, 0);
    images.writeUInt32BE(count, 4);
    images.writeUInt32BE(8, 8);
    images.writeUInt32BE(8, 12);
    const labels = Buffer.alloc(8 + count);
    labels.writeUInt32BE(0x00000801, 0);
    labels.writeUInt32BE(count, 4);
    for (let i = 0; i < count; i++) {
      const label = i % 2;
      labels[8 + i] = label;
      for (let p = 0; p < 64; p++) {
        const top = p < 32;
        const bright = (label === 0) === top;
        images[16 + i * 64 + p] = bright ? 180 + rng.int(76) : rng.int(60);
      }
    }
    writeFileSync(join(dir, `${prefix}-images-idx3-ubyte`), images);
    writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte`), labels);
  };
  split('train', 96);
  split('t10k', 32);
  return dir;
}

function greyMicroConfig(totalSteps: number) {
  const c = microConfig(totalSteps);
  return { ...c, model: { ...c.model, inChannels: 1 } };
}

async function metricLines(storeUri: string, runId: string): Promise<MetricRecord[]> {
  const store = openStore(storeUri);
  const records: MetricRecord[] = [];
  for (const key of await store.list(runKeys.evalMetricsPrefix(runId))) {
    for (const line of (await store.getText(key)).split('\n').filter(Boolean)) records.push(JSON.parse(line));
  }
  return records;
}

test('a run evaluates itself at its interval and at the end, and shows the latest numbers', async () => {
  const storeUri = join(h.workdir, 'store');
  const dataset = writeLabelledIdx(join(h.workdir, 'labelled-idx'));
  const config = greyMicroConfig(8);
  const input: TrainingRunInput = {
    ...h.input('eval-run', storeUri, dataset, config, 4),
    evaluation: {
      every: 4,
      samples: 16,
      sampler: { kind: 'ddim', steps: 5 },
      bpdImages: 12,
      bpdTimesteps: 4,
    },
  };
  const handle = await h.startRun(input);
  const result = await handle.result();
  expect(result.finalStep).toBe(8);

  // The status query and the memo carry the final evaluation.
  const status = await h.status(handle);
  expect(status.phase).toBe('completed');
  const latest = status.evaluation?.latest;
  expect(latest?.step).toBe(8);
  expect(Number.isFinite(latest?.bitsPerDim)).toBe(true);
  expect(latest!.bitsPerDimStdErr!).toBeGreaterThan(0);
  expect(Number.isFinite(latest?.classifierFid)).toBe(true);
  expect(latest!.confidentShare).toBeGreaterThanOrEqual(0);
  expect(latest!.confidentShare).toBeLessThanOrEqual(1);
  expect(latest?.skipped).toEqual([]);
  expect(status.evaluation?.note).toBeNull();
  const described = await handle.describe();
  expect(described.typedSearchAttributes.get(SEARCH_ATTRIBUTES.bitsPerDim)).toBeCloseTo(
    latest!.bitsPerDim!,
    10,
  );
  expect(described.typedSearchAttributes.get(SEARCH_ATTRIBUTES.classifierFid)).toBeCloseTo(
    latest!.classifierFid!,
    10,
  );
  const memo = described.memo as { evaluation: typeof latest; plots: string };
  expect(memo.evaluation?.step).toBe(8);
  expect(memo.plots).toBe(`${storeUri}/${runKeys.plots('eval-run').html}`);

  // Metric lines for both evaluations, each with its provenance.
  const records = await metricLines(storeUri, 'eval-run');
  expect([...new Set(records.map((r) => r.step))].sort()).toEqual([4, 8]);
  const seed = hashKey([config.train.seed, Purpose.Evaluation]);
  for (const step of [4, 8]) {
    const at = records.filter((r) => r.step === step);
    expect(at.map((r) => r.metric).sort()).toEqual([
      'bits_per_dim',
      'classifier_class_histogram',
      'classifier_confident_share',
      'classifier_fid',
    ]);
    for (const r of at) {
      expect(r.checkpoint).toBe(`eval-run/checkpoints/${String(step).padStart(9, '0')}`);
      expect(r.seed).toBe(seed);
    }
    const score = at.find((r) => r.metric === 'classifier_fid')!;
    expect([score.sampler, score.samplingSteps, score.sampleCount]).toEqual(['ddim', 5, 16]);
    const histogram = at.find((r) => r.metric === 'classifier_class_histogram')!.value as number[];
    expect(histogram.reduce((a, b) => a + b, 0)).toBe(16);
    const bpd = at.find((r) => r.metric === 'bits_per_dim')!;
    expect(bpd.sampleCount).toBe(12);
    expect(bpd.details).toMatchObject({ split: 'test', estimator: 'stratified', timestepsPerImage: 4 });
  }

  // The trainer's bits/dim is the estimator's number for that checkpoint, recomputed here in another process.
  const store = openStore(storeUri);
  const { state } = await new CheckpointRepository(store, 'eval-run').load(8);
  const heldOut = (await readShardedSplit(store, runKeys.heldOutManifest('eval-run'))).images;
  expect((await readShardedSplit(store, runKeys.datasetManifest('eval-run'))).manifest.heldOut).toBe(
    'test/manifest.json',
  );
  expect(heldOut.count).toBe(32);
  expect(heldOut.labels).toHaveLength(32);
  const chosen = Int32Array.from(new Rng([0, Purpose.Evaluation, 1]).permutation(32).subarray(0, 12)).sort();
  const pixels = new Uint8Array(12 * 64);
  chosen.forEach((idx, i) => pixels.set(heldOut.pixels.subarray(idx * 64, (idx + 1) * 64), i * 64));
  const { model, dispose } = epsModelFromWeights(config, state.ema);
  const local = await bitsPerDim(
    noiseScheduleFor(config.diffusion),
    model,
    { pixels, count: 12, height: 8, width: 8, channels: 1, indices: chosen },
    { timestepsPerImage: 4, seed, batchSize: 64 },
  );
  dispose();
  expect(local.bpd).toBeCloseTo(latest!.bitsPerDim!, 4);

  // Plots: a PNG people can open and a self-contained page.
  const png = PNG.sync.read(Buffer.from(await store.get(runKeys.plots('eval-run').png)));
  expect(png.width).toBe(1000);
  const html = await store.getText(runKeys.plots('eval-run').html);
  expect(html).toContain('<svg');
  expect(html).toContain('classifier FID');
  // Training metrics (loss, lr per step) were stored beside the checkpoints for the plots.
  expect((await store.list('eval-run/metrics/')).filter((k) => /metrics\/\d+\.jsonl$/.test(k))).toHaveLength(
    2,
  );
});

test('a failing evaluation is reported, retried at the next interval, and never fails the run', async () => {
  const storeUri = join(h.workdir, 'store');
  const dataset = writeLabelledIdx(join(h.workdir, 'labelled-idx-2'));
  const input: TrainingRunInput = {
    ...h.input('eval-fails', storeUri, dataset, greyMicroConfig(4), 4),
    evaluation: {
      metrics: ['fid'],
      extractor: { uri: join(h.workdir, 'no-such-extractor', 'model.json') },
    },
  };
  const handle = await h.startRun(input);
  const result = await handle.result();
  expect(result.finalStep).toBe(4);
  const status = await h.status(handle);
  expect(status.phase).toBe('completed');
  expect(status.evaluation?.latest).toBeNull();
  expect(status.evaluation?.note).toMatch(/evaluation of step 4 failed .*no-such-extractor/);
});
