/**
 * Test-only fault injection, off unless DDPM_FAULT_INJECTION is set: `kill-during-checkpoint:<step>`
 * SIGKILLs this worker right after the first tensor object of checkpoint <step> is written and before its
 * manifest, a crash window too narrow to hit reliably from outside. The kill itself is real.
 */
export function checkpointFaultHook(step: number): ((key: string) => void) | undefined {
  const spec = process.env.DDPM_FAULT_INJECTION;
  const m = spec ? /^kill-during-checkpoint:(\d+)$/.exec(spec) : null;
  if (!m || Number(m[1]) !== step) return undefined;
  return (key) => {
    process.stderr.write(`fault injection: SIGKILL after writing ${key}\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}
