import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';

/**
 * Runs the server under a tiny POSIX shell that TERMs it when our stdin pipe closes. The pipe closes
 * whenever this Node process dies, however it dies (even SIGKILL), so a server can never outlive the
 * test or CLI that started it. It is also the graceful stop: close stdin, and the shell exits only
 * after the server has, so its ports and files are free again when `stop()` resolves.
 */
const WATCHDOG_SCRIPT = `
exec 3<&0
"$@" </dev/null 3<&- &
server=$!
( read -r _ <&3; kill -TERM "$server" 2>/dev/null ) &
watcher=$!
exec 3<&-
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
`;

const OUTPUT_TAIL_BYTES = 64 * 1024;
const live = new Set<ManagedProcess>();
let exitHookInstalled = false;

// Belt and braces for a normal exit: kill at once instead of waiting for the watchdog's TERM.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const proc of live) proc.killNow();
  });
}

export interface ManagedProcessOptions {
  /** Short name for messages, e.g. "temporal dev server". */
  name: string;
  command: string;
  args: string[];
  /** Extra environment (merged over process.env); use it for secrets, never argv (visible in ps). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append the server's output to this file. */
  logFile?: string;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A server process started by us, stopped by us, and killed if we die first. */
export class ManagedProcess {
  private readonly child: ChildProcess;
  private outputTail = '';
  private exitInfo: ProcessExit | undefined;
  private readonly exitPromise: Promise<ProcessExit>;

  private constructor(readonly options: ManagedProcessOptions) {
    installExitHook();
    this.child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'watchdog', options.command, ...options.args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      // Own process group, so a forced stop can take the shell and the server down together.
      detached: true,
    });
    this.exitPromise = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        resolve(this.exitInfo);
      });
    });
    const record = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      this.outputTail = (this.outputTail + text).slice(-OUTPUT_TAIL_BYTES);
      if (options.logFile) appendFileSync(options.logFile, text);
    };
    this.child.stdout?.on('data', record);
    this.child.stderr?.on('data', record);
    // EPIPE on a stdin we never write to only means the shell is already gone.
    this.child.stdin?.on('error', () => undefined);
    this.child.once('error', (err) => {
      this.outputTail += `\nfailed to start ${options.command}: ${err.message}`;
    });
    live.add(this);
  }

  static start(options: ManagedProcessOptions): ManagedProcess {
    return new ManagedProcess(options);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exit(): ProcessExit | undefined {
    return this.exitInfo;
  }

  /** The last output lines, for error messages. */
  output(maxChars = 4000): string {
    return this.outputTail.slice(-maxChars);
  }

  /** Undefined while running; once exited, one line on how, with the last output line. */
  exitReason(): string | undefined {
    if (!this.exitInfo) return undefined;
    const how = this.exitInfo.signal ? `signal ${this.exitInfo.signal}` : `code ${this.exitInfo.code}`;
    const lastLine = this.outputTail.trim().split('\n').pop() ?? '';
    return `${this.options.name} exited with ${how}${lastLine ? `: ${lastLine}` : ''}`;
  }

  waitForExit(): Promise<ProcessExit> {
    return this.exitPromise;
  }

  /**
   * Graceful by default (TERM via the watchdog, then KILL after `timeoutMs`); `force` kills at once,
   * like a crash or a power cut. Resolves once the server is gone.
   */
  async stop(opts: { force?: boolean; timeoutMs?: number } = {}): Promise<ProcessExit> {
    if (this.exitInfo) return this.exitInfo;
    if (opts.force) {
      this.killNow();
    } else {
      this.child.stdin?.end();
      const timer = setTimeout(() => this.killNow(), opts.timeoutMs ?? 10_000);
      try {
        return await this.exitPromise;
      } finally {
        clearTimeout(timer);
      }
    }
    return this.exitPromise;
  }

  /** Synchronous SIGKILL of the whole process group (shell, watcher and server). */
  killNow(): void {
    if (this.exitInfo || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
