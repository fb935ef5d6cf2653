/**
 * Test-only fault injection, off unless DDPM_FAULT_INJECTION is set, for crash windows too narrow to hit
 * reliably from outside. The kills themselves are real SIGKILLs of this worker.
 *  - `kill-during-checkpoint:<step>`: right after the first tensor object of checkpoint <step> is written
 *    and before its manifest.
 *  - `kill-during-allreduce:<step>`: right after this trainer sent the first bytes of step <step>'s
 *    gradient all-reduce, so its peers are mid-reduce.
 * And for windows that a fast machine closes before a test can act in them (no kill; the work is real):
 *  - `hold-after-step:<step>`: once per process, after completing step <step>, the trainer heartbeats
 *    without stepping until its segment is cancelled: a segment known to be mid-way when a pause,
 *    cancel or kill arrives.
 *  - `slow-sampling:<ms>`: every denoising step of a sample chunk takes <ms> longer, so a chunk lasts
 *    long enough to be watched and killed mid-way.
 */
import { setTimeout as sleep } from 'node:timers/promises';

function faultValue(kind: string): number | undefined {
  const spec = process.env.DDPM_FAULT_INJECTION;
  const m = spec ? /^([a-z-]+):(\d+)$/.exec(spec) : null;
  return m !== null && m[1] === kind ? Number(m[2]) : undefined;
}

function kill(what: string): void {
  process.stderr.write(`fault injection: SIGKILL ${what}\n`);
  process.kill(process.pid, 'SIGKILL');
}

export function checkpointFaultHook(step: number): ((key: string) => void) | undefined {
  if (faultValue('kill-during-checkpoint') !== step) return undefined;
  return (key) => kill(`after writing ${key}`);
}

export function allReduceFaultHook(step: number): (() => void) | undefined {
  // The step being reduced is the state's step before the update: the update makes it step + 1.
  if (faultValue('kill-during-allreduce') !== step + 1) return undefined;
  return () => kill(`during the all-reduce of step ${step + 1}`);
}

let held = false;

/** `hold-after-step`: call after each completed step; returns once the segment is cancelled. */
export async function holdAfterStepFault(
  step: number,
  cancelled: AbortSignal,
  heartbeat: () => void,
): Promise<void> {
  if (held || faultValue('hold-after-step') !== step) return;
  held = true;
  process.stderr.write(`fault injection: holding after step ${step} until cancelled\n`);
  while (!cancelled.aborted) {
    heartbeat();
    await sleep(100);
  }
}

/** `slow-sampling`: call after each denoising step of a sample chunk. */
export async function slowSamplingFault(): Promise<void> {
  const ms = faultValue('slow-sampling');
  if (ms !== undefined) await sleep(ms);
}
