import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeModule } from '../backend/candidates/tensorflow';
import { runKeys } from '../store-layout';
import type { MetricRecord } from './evaluate';
import type { RunHistory, TrainPoint } from './plots';

/**
 * TensorBoard event files for a run, written with tfjs-node's summary writer when the native backend is
 * installed (the other backends have no writer). One event file per metrics object (training lines up to
 * a checkpoint; one evaluation), written once, so `tensorboard --logdir <store>/<run>/tensorboard` (or the
 * whole local store) shows loss, learning rate and every evaluation metric over steps.
 */
interface SummaryWriter {
  scalar(name: string, value: number, step: number): void;
  flush(): void;
}

interface NodeNamespace {
  summaryFileWriter(logdir: string, maxQueue?: number, flushMillis?: number): SummaryWriter;
}

interface EventObjects {
  list(prefix: string): Promise<string[]>;
  put(key: string, body: Uint8Array | string): Promise<void>;
}

export function tensorboardAvailable(): boolean {
  return nativeModule() !== null;
}

/** Scalars of one event file, tagged as TensorBoard groups them ("train/loss", "eval/bits_per_dim"). */
type Scalar = [tag: string, value: number, step: number];

async function eventFile(scalars: Scalar[]): Promise<Uint8Array> {
  const node = nativeModule()!.node as NodeNamespace;
  // The writer is cached per directory and never closed by tfjs-node: a fresh directory per file.
  const dir = await mkdtemp(join(tmpdir(), 'ddpm-tb-'));
  try {
    const writer = node.summaryFileWriter(dir, 10_000, 1_000_000);
    for (const [tag, value, step] of scalars) writer.scalar(tag, value, step);
    writer.flush();
    const [name] = (await readdir(dir)).filter((n) => n.includes('tfevents'));
    return await readFile(join(dir, name));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const trainScalars = (points: TrainPoint[]): Scalar[] =>
  points.flatMap((p) => [
    ['train/loss', p.loss, p.step] as Scalar,
    ...(p.lr !== undefined ? [['train/learning_rate', p.lr, p.step] as Scalar] : []),
  ]);

const evalScalars = (records: MetricRecord[]): Scalar[] =>
  records.flatMap((r) =>
    typeof r.value === 'number'
      ? [[`eval/${r.metric}`, r.value, r.step] as Scalar]
      : r.value.map((v, k) => [`eval/${r.metric}/${k}`, v, r.step] as Scalar),
  );

/**
 * Writes the event files the store lacks: training points grouped by the checkpoint step that ended their
 * metrics object, and each evaluation. Returns how many files were written (0 without the native backend).
 */
export async function writeTensorboardEvents(store: EventObjects, history: RunHistory): Promise<number> {
  if (!tensorboardAvailable()) return 0;
  const existing = new Set(await store.list(runKeys.tensorboardPrefix(history.runId)));
  let written = 0;
  const emit = async (key: string, scalars: Scalar[]) => {
    if (existing.has(key) || scalars.length === 0) return;
    await store.put(key, await eventFile(scalars));
    written++;
  };
  const evalSteps = [...new Set(history.evals.map((r) => r.step))].sort((a, b) => a - b);
  // Training points up to each evaluated step, then that step's evaluation.
  let from = 0;
  for (const step of evalSteps) {
    const points = history.train.filter((p) => p.step > from && p.step <= step);
    await emit(runKeys.tensorboardEvents(history.runId, step, 'a-train'), trainScalars(points));
    const records = history.evals.filter((r) => r.step === step);
    await emit(
      runKeys.tensorboardEvents(history.runId, step, `b-eval-${records.length}`),
      evalScalars(records),
    );
    from = step;
  }
  return written;
}
