/**
 * Sampling and inpainting on the trainer pool, against a real Temporal dev server and two real trainer
 * worker processes (one of them SIGKILLed mid-chunk): a set split into chunk activities is gathered by
 * index into exactly the images one process makes on the same backend.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { initBackend } from '../core/backend';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { inpaintImages } from '../core/inpaint';
import type { RunConfig } from '../core/presets';
import { Purpose, Rng } from '../core/rng';
import { encodeImagePng, generateImages, readSampleSet } from '../core/sampling';
import { inpaintKeys, runKeys } from '../core/store-layout';
import { Trainer } from '../core/train/trainer';
import { LocalDirStore } from '../store';
import { CONTROL_TASK_QUEUE } from '../workflows/api';
import {
  INPAINT_IMAGE_WORKFLOW,
  InpaintImageInput,
  InpaintImageResult,
  SAMPLE_IMAGES_WORKFLOW,
  SampleChunkHeartbeat,
  SampleImagesInput,
  SampleImagesResult,
  sampleImagesProgressQuery,
} from '../workflows/sampling-api';
import { PipelineHarness, TrainerProcess, microConfig, sleep } from './helpers/pipeline';

jest.setTimeout(400_000);

const RUN = 'pool-run';
const STEP = 7;
let h: PipelineHarness;
let storeDir: string;
let store: LocalDirStore;
let config: RunConfig;
let ema: Float32Array;
let trainers: TrainerProcess[];

beforeAll(async () => {
  h = await PipelineHarness.start();
  storeDir = join(h.workdir, 'store');
  store = new LocalDirStore(storeDir);
  await initBackend('tensorflow');
  config = microConfig(STEP);
  // A checkpoint whose EMA weights make non-trivial images (the output layers start at zero).
  const rng = new Rng([31, Purpose.Evaluation]);
  const pixels = Uint8Array.from({ length: 8 * 8 * 8 * 3 }, () => rng.int(256));
  const trainer = new Trainer({ config, data: { count: 8, height: 8, width: 8, channels: 3, pixels } });
  const state = await trainer.hostState();
  state.step = STEP;
  state.ema = Float32Array.from(state.params, (v) => v + 0.05 * rng.normal());
  ema = state.ema;
  await new CheckpointRepository(store, RUN).save(state, config);
  trainer.dispose();
  trainers = [h.spawnTrainer(), h.spawnTrainer()];
  await Promise.all(trainers.map((t) => t.ready()));
});

afterAll(async () => {
  await h?.stop();
});

function request(overrides: Partial<SampleImagesInput> = {}): SampleImagesInput {
  return {
    runId: RUN,
    storeUri: storeDir,
    step: STEP,
    sampler: { kind: 'ancestral' },
    seed: 12,
    count: 12,
    batch: 2,
    chunkImages: 2,
    backend: 'tensorflow',
    heartbeatSeconds: 5,
    ...overrides,
  };
}

function start(input: SampleImagesInput, id: string): Promise<WorkflowHandle> {
  return h.client.workflow.start(SAMPLE_IMAGES_WORKFLOW, {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId: id,
    args: [input],
  });
}

async function chunkStarts(handle: WorkflowHandle): Promise<{ identity: string; attempt: number }[]> {
  const history = await handle.fetchHistory();
  const scheduled = new Map<string, string>();
  const starts: { identity: string; attempt: number }[] = [];
  for (const e of history.events ?? []) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduled.set(String(e.eventId), s.activityType?.name ?? '');
    const st = e.activityTaskStartedEventAttributes;
    if (st && scheduled.get(String(st.scheduledEventId)) === 'sampleChunk') {
      starts.push({ identity: st.identity ?? '', attempt: st.attempt ?? 1 });
    }
  }
  return starts;
}

test('a set fans out over both trainers, heartbeats progress, and gathers by index into the one-process images', async () => {
  const input = request();
  const handle = await start(input, 'pool-sample-1');
  const beats: SampleChunkHeartbeat[] = [];
  let progressSeen = false;
  const watching = (async () => {
    for (;;) {
      const d = await handle.describe();
      if (d.status.name !== 'RUNNING') return;
      for (const a of d.raw.pendingActivities ?? []) {
        const p = a.heartbeatDetails?.payloads?.[0];
        if (p?.data) beats.push(JSON.parse(Buffer.from(p.data).toString('utf8')) as SampleChunkHeartbeat);
      }
      const progress = await handle.query(sampleImagesProgressQuery).catch(() => null);
      if (progress && progress.chunks === 6) progressSeen = true;
      await sleep(100);
    }
  })();
  const result = (await handle.result()) as SampleImagesResult;
  await watching;

  expect(result).toMatchObject({
    step: STEP,
    count: 12,
    chunks: 6,
    reusedChunks: 0,
    backends: ['tensorflow'],
  });
  expect(result.setKey).toBe(runKeys.sampleSet(RUN, STEP, 'ddpm100-seed12-n12'));
  const identities = new Set((await chunkStarts(handle)).map((s) => s.identity));
  expect(identities).toEqual(new Set(trainers.map((t) => `${t.child.pid}@${hostname()}`)));
  expect(progressSeen).toBe(true);
  expect(beats.some((b) => b.count === 2 && b.stepsTotal === 100 && b.imagesDone > 0)).toBe(true);

  const { manifest, pixels } = await readSampleSet(store, result.setKey);
  const reference = await generateImages(config, ema, {
    count: 12,
    seed: 12,
    sampler: { kind: 'ancestral' },
    batchSize: 2,
  });
  expect(Buffer.from(pixels).equals(Buffer.from(reference))).toBe(true);
  expect(manifest.chunks.map((c) => c.first)).toEqual([0, 2, 4, 6, 8, 10]);
  expect(await store.exists(result.gridKey)).toBe(true);
});

test('a trainer SIGKILLed mid-chunk: its chunk runs again on the other, and the set is still exactly the same', async () => {
  const input = request({ seed: 13, count: 8, batch: 4, chunkImages: 4 });
  const handle = await start(input, 'pool-sample-kill');
  // Wait until both chunks run, then kill the trainer of the first one mid-way.
  const victim = await h.waitFor('both chunks running with progress', async () => {
    const d = await handle.describe();
    const running = (d.raw.pendingActivities ?? []).filter((a) => a.heartbeatDetails?.payloads?.length);
    if (running.length < 2) return null;
    const beat = JSON.parse(
      Buffer.from(running[0].heartbeatDetails!.payloads![0].data!).toString('utf8'),
    ) as SampleChunkHeartbeat;
    if (beat.stepsDone < 5) return null;
    const pid = Number((running[0].lastWorkerIdentity ?? '').split('@')[0]);
    return trainers.find((t) => t.child.pid === pid) ?? null;
  });
  await victim.kill('SIGKILL');
  const result = (await handle.result()) as SampleImagesResult;

  const starts = await chunkStarts(handle);
  expect(starts.some((s) => s.attempt >= 2)).toBe(true);
  const { pixels } = await readSampleSet(store, result.setKey);
  const reference = await generateImages(config, ema, {
    count: 8,
    seed: 13,
    sampler: { kind: 'ancestral' },
    batchSize: 4,
  });
  expect(Buffer.from(pixels).equals(Buffer.from(reference))).toBe(true);
  trainers = trainers.filter((t) => t !== victim);
});

test('a checkpoint that does not exist fails the request at once, with the reason, instead of retrying', async () => {
  const handle = await start(request({ step: 999 }), 'pool-sample-missing');
  const failure = await handle.result().then(
    () => null,
    (e: unknown) => e,
  );
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  let message = '';
  for (let e: unknown = failure; e instanceof Error; e = e.cause) message = e.message || message;
  expect(message).toMatch(
    /^run pool-run has no usable checkpoint at step 999 \(.*no manifest.*\); its checkpoints: 7$/,
  );
  const starts = await chunkStarts(handle);
  expect(Math.max(...starts.map((s) => s.attempt))).toBe(1);
});

test('inpainting on the pool writes the same PNG as inpainting in one process', async () => {
  const dir = runKeys.inpaint(RUN, 'test');
  const shape = { height: 8, width: 8, channels: 3 };
  const image = Uint8Array.from({ length: 192 }, (_, i) => (i * 37) % 256);
  const keep = Uint8Array.from({ length: 64 }, (_, p) => (p % 8 < 4 ? 1 : 0));
  await store.put(inpaintKeys.image(dir), encodeImagePng(image, shape));
  await store.put(
    inpaintKeys.mask(dir),
    encodeImagePng(
      Uint8Array.from(keep, (k) => k * 255),
      { ...shape, channels: 1 },
    ),
  );
  const input: InpaintImageInput = {
    runId: RUN,
    storeUri: storeDir,
    step: STEP,
    imageKey: inpaintKeys.image(dir),
    maskKey: inpaintKeys.mask(dir),
    outKey: inpaintKeys.result(dir),
    seed: 3,
    repaint: { steps: 10, jumpLength: 2, resamplings: 2 },
    backend: 'tensorflow',
  };
  const result = (await h.client.workflow.execute(INPAINT_IMAGE_WORKFLOW, {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId: 'pool-inpaint',
    args: [input],
  })) as InpaintImageResult;
  expect(result).toMatchObject({ key: inpaintKeys.result(dir), steps: 10, jumpLength: 2, resamplings: 2 });
  const local = await inpaintImages(config, ema, {
    pixels: image,
    keep,
    count: 1,
    seed: 3,
    repaint: input.repaint,
  });
  expect(
    Buffer.from(await store.get(result.key)).equals(Buffer.from(encodeImagePng(local.pixels, shape))),
  ).toBe(true);
});

test('another workflow samples a set as a child workflow and gets the same result', async () => {
  const queue = 'test-sampling-parent';
  const connection = await NativeConnection.connect({ address: h.server.address });
  const worker = await Worker.create({
    connection,
    taskQueue: queue,
    workflowsPath: require.resolve('./fixtures/sampling-parent-workflows'),
  });
  const input = request({ seed: 21, count: 4, batch: 2, chunkImages: 2 });
  try {
    const [first, second] = (await worker.runUntil(
      h.client.workflow.execute('sampleTwiceAsChild', {
        taskQueue: queue,
        workflowId: 'parent-1',
        args: [input],
      }),
    )) as SampleImagesResult[];
    expect(first).toMatchObject({ count: 4, chunks: 2, reusedChunks: 0 });
    expect(second).toMatchObject({ setKey: first.setKey, chunks: 2, reusedChunks: 2 });
    const { pixels } = await readSampleSet(store, first.setKey);
    const reference = await generateImages(config, ema, {
      count: 4,
      seed: 21,
      sampler: { kind: 'ancestral' },
      batchSize: 2,
    });
    expect(Buffer.from(pixels).equals(Buffer.from(reference))).toBe(true);
  } finally {
    await connection.close();
  }
});
