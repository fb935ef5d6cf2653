/**
 * One rank of the data-parallel throughput benchmark (bench/data-parallel.ts starts these): trains the
 * preset on synthetic pixels, all-reducing over the coordinator's ring when the world is larger than one,
 * and prints one JSON line per timed step on stdout.
 *
 *   node --import tsx bench/data-parallel-rank.ts '<json RankJob>'
 */
import { joinGroup } from '../coordinator/client';
import type { Group } from '../coordinator/api';
import { initBackend } from '../core/backend';
import { presetNames } from '../core/presets';
import { Trainer, identityReducer } from '../core/train/trainer';
import { resolveRunConfig } from '../cli/options';
import { syntheticImages } from './synthetic-images';

export interface RankJob {
  preset: string;
  batch: number;
  microBatch?: number;
  steps: number;
  backend: 'tensorflow' | 'wasm' | 'cpu' | 'webgpu' | 'auto';
  slot: number;
  world: number;
  coordinator?: string;
  key?: string;
  attempt: number;
}

export interface RankStep {
  step: number;
  seconds: number;
  computeSeconds: number;
  allReduceSeconds: number;
  waitSeconds: number;
  images: number;
}

async function main(job: RankJob): Promise<void> {
  if (!presetNames().includes(job.preset)) throw new Error(`unknown preset ${job.preset}`);
  await initBackend(job.backend, (line) => process.stderr.write(`${line}\n`));
  const config = resolveRunConfig(job.preset, { batch: job.batch, microBatch: job.microBatch, steps: 1e6 });
  let group: Group | null = null;
  if (job.world > 1) {
    const joined = await joinGroup({
      address: job.coordinator!,
      clusterKey: job.key!,
      runId: 'bench-data-parallel',
      execution: String(process.ppid),
      attempt: job.attempt,
      slot: job.slot,
      expectedSlots: Array.from({ length: job.world }, (_, k) => k),
      minWorkers: job.world,
      rendezvousSeconds: 300,
      startStep: 0,
      livenessSeconds: 600,
      peerTimeoutSeconds: 600,
    });
    if (!joined.admitted) throw new Error(`not admitted: ${joined.reason}`);
    group = joined.group;
  }
  let stepStarted = 0;
  let compute = 0;
  const m = config.model;
  const trainer: Trainer = new Trainer({
    config,
    data: syntheticImages(Math.max(config.train.batchSize, 256), m.imageSize, m.inChannels),
    rank: group?.rank ?? 0,
    worldSize: job.world,
    reduce: group
      ? async (local: Float32Array): Promise<Float32Array> => {
          compute = (performance.now() - stepStarted) / 1000;
          return group!.allReduce(local, { step: trainer.currentStep, computeSeconds: compute });
        }
      : identityReducer,
  });
  for (let i = 0; i < job.steps; i++) {
    stepStarted = performance.now();
    const r = await trainer.step();
    const t = group?.lastTimings;
    const line: RankStep = {
      step: r.step,
      seconds: r.seconds,
      computeSeconds: group ? compute : r.seconds,
      allReduceSeconds: t?.seconds ?? 0,
      waitSeconds: t?.waitSeconds ?? 0,
      images: r.images,
    };
    process.stdout.write(`STEP ${JSON.stringify(line)}\n`);
  }
  await group?.close();
  trainer.dispose();
}

main(JSON.parse(process.argv[2]) as RankJob).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`rank failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
