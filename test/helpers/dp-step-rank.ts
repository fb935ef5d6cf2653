/**
 * One rank of a data-parallel group, outside Temporal: joins the coordinator, trains a few steps of the
 * micro U-Net with its gradients all-reduced over the ring, and writes what the test compares (the first
 * step's reduced gradient and the final parameters) as raw fp32 files.
 *
 *   node --import tsx test/helpers/dp-step-rank.ts '<json RankJob>'
 */
import { writeFileSync } from 'node:fs';
import { joinGroup } from '../../coordinator/client';
import { initBackend } from '../../core/backend';
import { loadImageDataset } from '../../core/data';
import { Trainer } from '../../core/train/trainer';
import { microConfig } from './pipeline';

export interface RankJob {
  coordinator: string;
  key: string;
  runId: string;
  attempt: number;
  slot: number;
  slots: number[];
  dataset: string;
  steps: number;
  /** Output prefix: <out>.grads.f32 and <out>.params.f32 */
  out: string;
}

async function main(job: RankJob): Promise<void> {
  await initBackend('tensorflow');
  const joined = await joinGroup({
    address: job.coordinator,
    clusterKey: job.key,
    runId: job.runId,
    execution: 'test',
    attempt: job.attempt,
    slot: job.slot,
    expectedSlots: job.slots,
    minWorkers: job.slots.length,
    rendezvousSeconds: 60,
    startStep: 0,
    livenessSeconds: 30,
    peerTimeoutSeconds: 60,
  });
  if (!joined.admitted) throw new Error(`not admitted: ${joined.reason}`);
  const group = joined.group;
  let firstReduced: Float32Array | null = null;
  const trainer: Trainer = new Trainer({
    config: microConfig(job.steps),
    data: await loadImageDataset(job.dataset),
    rank: group.rank,
    worldSize: group.world,
    reduce: async (local: Float32Array): Promise<Float32Array> => {
      const reduced: Float32Array = await group.allReduce(local, { step: trainer.currentStep });
      firstReduced ??= reduced.slice();
      return reduced;
    },
  });
  while (trainer.currentStep < job.steps) await trainer.step();
  await group.close();
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  writeFileSync(`${job.out}.grads.f32`, bytes(firstReduced!));
  writeFileSync(`${job.out}.params.f32`, bytes((await trainer.hostState()).params));
  trainer.dispose();
}

main(JSON.parse(process.argv[2]) as RankJob).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`rank failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
