import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

const REPO = path.resolve(__dirname, '..');

export interface CoordinatorProcess {
  /** "host:port" from the `READY host:port` line. */
  address: string;
  child: ChildProcess;
  /** Everything it wrote to stderr so far (its log). */
  stderr: () => string;
}

/**
 * Starts the coordinator as a child process on an ephemeral loopback port (benchmarks and tests) and
 * resolves once it is listening. Runs `node --import tsx`, not the tsx CLI, whose wrapper process would
 * survive a SIGKILL of itself.
 */
export function startCoordinatorProcess(clusterKey: string, timeoutMs = 20_000): Promise<CoordinatorProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'coordinator/main.ts', '--port', '0'], {
    cwd: REPO,
    env: { ...process.env, DDPM_COORDINATOR_KEY: clusterKey },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`coordinator did not start in ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ address: m[1], child, stderr: () => err });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`coordinator exited (${code}): ${err}`));
    });
  });
}
