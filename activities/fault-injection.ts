/**
 * Test-only fault injection, off unless DDPM_FAULT_INJECTION is set, for crash windows too narrow to hit
 * reliably from outside. The kills themselves are real SIGKILLs of this worker.
 *  - `kill-during-checkpoint:<step>`: right after the first tensor object of checkpoint <step> is written
 *    and before its manifest.
 *  - `kill-during-allreduce:<step>`: right after this trainer sent the first bytes of step <step>'s
 *    gradient all-reduce, so its peers are mid-reduce.
 */
function faultAt(kind: string, step: number): boolean {
  const spec = process.env.DDPM_FAULT_INJECTION;
  const m = spec ? /^([a-z-]+):(\d+)$/.exec(spec) : null;
  return m !== null && m[1] === kind && Number(m[2]) === step;
}

function kill(what: string): void {
  process.stderr.write(`fault injection: SIGKILL ${what}\n`);
  process.kill(process.pid, 'SIGKILL');
}

export function checkpointFaultHook(step: number): ((key: string) => void) | undefined {
  if (!faultAt('kill-during-checkpoint', step)) return undefined;
  return (key) => kill(`after writing ${key}`);
}

export function allReduceFaultHook(step: number): (() => void) | undefined {
  // The step being reduced is the state's step before the update: the update makes it step + 1.
  if (!faultAt('kill-during-allreduce', step + 1)) return undefined;
  return () => kill(`during the all-reduce of step ${step + 1}`);
}
