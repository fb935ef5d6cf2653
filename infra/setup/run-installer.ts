/**
 * Runs one of the project's bash installers (infra/install-tools.sh, infra/tfjs-native/install.sh) for a
 * first-use install: their step lines ("[install-tools] temporal: ...", with elapsed times) go to `log`
 * as they come; the noisy output of the builds themselves stays in the installers' log files. A failure
 * becomes an InstallError carrying the installer's one-line reason, which names the step and its log.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

export class InstallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InstallError';
  }
}

export interface InstallerOptions {
  /** The checkout whose installer runs (and, for the native backend, whose link it makes). */
  repoRoot?: string;
  env?: NodeJS.ProcessEnv;
}

/** A step line of an installer: "[tag] ..." (the tail of a failed step's log is not one). */
const STEP_LINE = /^\[(install-tools|tfjs-native)\] /;

export function runInstaller(
  script: string,
  args: string[],
  log: (line: string) => void,
  options: InstallerOptions = {},
): Promise<void> {
  const repoRoot = options.repoRoot ?? REPO_ROOT;
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(repoRoot, script), ...args], {
      cwd: repoRoot,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let error: string | undefined;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        const failure = /^\[[\w-]+\] ERROR: (.*)$/.exec(line);
        if (failure) error = failure[1];
        else if (STEP_LINE.test(line)) log(line);
      });
    }
    child.once('error', (err) => reject(new InstallError(`could not run ${script}: ${err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new InstallError(
            error ?? `${script} ${signal ? `was killed by ${signal}` : `exited with ${code}`}`,
          ),
        );
    });
  });
}
