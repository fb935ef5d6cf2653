/**
 * One trainer-like member for the coordinator tests: joins a group, runs the all-reduces its job lists
 * over reproducible inputs, writes each result as raw fp32, and prints one JSON line (its rank, and the
 * error it ended with, if any).
 *
 *   node --import tsx test/helpers/coordinator-worker.ts '<json WorkerJob>'
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoordinatorError, type WireFormat } from '../../coordinator/api';
import { joinGroup } from '../../coordinator/client';
import { reduceInput } from './coordinator-data';

export interface WorkerJob {
  address: string;
  key: string;
  runId: string;
  attempt: number;
  slot: number;
  expectedSlots: number[];
  minWorkers?: number;
  rendezvousSeconds?: number;
  startStep?: number;
  livenessSeconds?: number;
  peerTimeoutSeconds?: number;
  wire?: WireFormat;
  seed: number;
  /** Buffer lengths to reduce, in order; each `repeats` times. */
  lengths: number[];
  repeats?: number;
  /** Results go to <outDir>/slot<slot>-len<length>-rep<r>.f32 */
  outDir?: string;
  /** Kill (SIGKILL) or freeze (SIGSTOP) this process right after the first bytes of the first reduction. */
  afterFirstSend?: 'SIGKILL' | 'SIGSTOP';
  /** Reported to the coordinator on entering each all-reduce (straggler detection). */
  computeSeconds?: number;
  /** After the reductions: wait this long, then close (with `closeReason`, if given). */
  holdMs?: number;
  closeReason?: string;
  /** After closing, stay alive this long so the test can see whether anything reached us. */
  lingerMs?: number;
}

export interface WorkerReport {
  admitted: boolean;
  reason?: string;
  rank?: number;
  world?: number;
  slots?: number[];
  reductions: number;
  error?: { kind: string; message: string; slots: number[] };
  /** From entering the failing all-reduce to its rejection. */
  failedAfterMs?: number;
  logs: string[];
}

async function main(job: WorkerJob): Promise<WorkerReport> {
  const logs: string[] = [];
  const report: WorkerReport = { admitted: false, reductions: 0, logs };
  let entered = 0;
  try {
    const joined = await joinGroup({
      address: job.address,
      clusterKey: job.key,
      runId: job.runId,
      execution: 'test',
      attempt: job.attempt,
      slot: job.slot,
      expectedSlots: job.expectedSlots,
      minWorkers: job.minWorkers ?? job.expectedSlots.length,
      rendezvousSeconds: job.rendezvousSeconds ?? 30,
      startStep: job.startStep ?? 0,
      livenessSeconds: job.livenessSeconds ?? 10,
      peerTimeoutSeconds: job.peerTimeoutSeconds ?? 30,
      wire: job.wire,
      log: (line) => logs.push(line),
    });
    if (!joined.admitted) return { ...report, reason: joined.reason };
    const group = joined.group;
    Object.assign(report, { admitted: true, rank: group.rank, world: group.world, slots: group.slots });
    let step = 0;
    for (const length of job.lengths) {
      for (let rep = 0; rep < (job.repeats ?? 1); rep++) {
        const buf = reduceInput(job.seed, job.slot, length);
        const signal = step === 0 ? job.afterFirstSend : undefined;
        entered = performance.now();
        await group.allReduce(buf, {
          step: step++,
          computeSeconds: job.computeSeconds ?? 0.01,
          afterFirstSend: signal ? () => process.kill(process.pid, signal) : undefined,
        });
        report.reductions++;
        if (job.outDir) {
          const file = join(job.outDir, `slot${job.slot}-len${length}-rep${rep}.f32`);
          writeFileSync(file, Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
        }
      }
    }
    entered = 0;
    if (job.holdMs) await new Promise((r) => setTimeout(r, job.holdMs));
    await group.close(job.closeReason);
    if (job.lingerMs) await new Promise((r) => setTimeout(r, job.lingerMs));
  } catch (err) {
    if (entered) report.failedAfterMs = performance.now() - entered;
    report.error =
      err instanceof CoordinatorError
        ? { kind: err.kind, message: err.message, slots: err.slots }
        : { kind: 'other', message: err instanceof Error ? err.message : String(err), slots: [] };
  }
  return report;
}

main(JSON.parse(process.argv[2]) as WorkerJob).then(
  (report) => {
    process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
  },
  (err: unknown) => {
    process.stderr.write(`worker crashed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
