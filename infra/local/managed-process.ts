import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { groupMembers } from './daemon';
import { sleep } from './wait';

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
/**
 * A Go program that crashes (panic, runtime fatal error, fatal signal) prints what went wrong first, then
 * the stacks of its goroutines, often far more than the output tail: the start is kept separately.
 */
const CRASH_START = /(^|\n)(panic: |fatal error: |SIG[A-Z]+: )/;
const CRASH_KEEP_CHARS = 4096;
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

/**
 * One line from the start of a Go crash report: its message lines (up to the first goroutine's stack) and
 * the first function of that stack outside the runtime, e.g. "panic: listen tcp ...: bind: address
 * already in use (in main.start)".
 */
export function crashSummary(report: string): string {
  const lines = report.split('\n');
  const stackAt = lines.findIndex((l) => /^goroutine \d+\b.*\[[^\]]*\]:?$/.test(l));
  const message = (stackAt < 0 ? lines.slice(0, 3) : lines.slice(0, stackAt))
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^(PC|pc)=0x/.test(l) && !/^r[a-z0-9]+ +0x/.test(l))
    .join(' ');
  const stack = stackAt < 0 ? [] : lines.slice(stackAt + 1);
  const end = stack.indexOf('');
  const frame = (end < 0 ? stack : stack.slice(0, end)).find(
    (l) => !l.startsWith('\t') && !/^(runtime\.|panic\(|created by )/.test(l),
  );
  return frame ? `${message} (in ${frame.replace(/\(.*$/, '')})` : message;
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
  /** Output from the first line that starts a crash report on, bounded. */
  private crashHead = '';
  /** The unfinished last line of the output, so a crash's first line split over two chunks is found. */
  private partialLine = '';
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
      this.recordCrash(text);
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

  /**
   * Undefined while running; once exited, one line on how: what a crash report says went wrong (its
   * first lines, not the last line of its stack traces), else the last output line.
   */
  exitReason(): string | undefined {
    if (!this.exitInfo) return undefined;
    const how = this.exitInfo.signal ? `signal ${this.exitInfo.signal}` : `code ${this.exitInfo.code}`;
    const detail = this.crashHead
      ? crashSummary(this.crashHead)
      : (this.outputTail.trim().split('\n').pop() ?? '');
    return `${this.options.name} exited with ${how}${detail ? `: ${detail}` : ''}`;
  }

  private recordCrash(text: string): void {
    if (this.crashHead) {
      if (this.crashHead.length < CRASH_KEEP_CHARS)
        this.crashHead = (this.crashHead + text).slice(0, CRASH_KEEP_CHARS);
      return;
    }
    const lines = this.partialLine + text;
    const m = CRASH_START.exec(lines);
    if (m) this.crashHead = lines.slice(m.index + m[1].length).slice(0, CRASH_KEEP_CHARS);
    else this.partialLine = lines.slice(lines.lastIndexOf('\n') + 1).slice(-CRASH_KEEP_CHARS);
  }

  waitForExit(): Promise<ProcessExit> {
    return this.exitPromise;
  }

  /**
   * Graceful by default (TERM via the watchdog, then KILL after `timeoutMs`); `force` kills at once,
   * like a crash or a power cut. Resolves once the server is gone: every process of its group, not
   * only the shell, so its ports and files are free for a successor.
   */
  async stop(opts: { force?: boolean; timeoutMs?: number } = {}): Promise<ProcessExit> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    let exit: ProcessExit;
    if (this.exitInfo) {
      exit = this.exitInfo;
    } else if (opts.force) {
      this.killNow();
      exit = await this.exitPromise;
    } else {
      this.child.stdin?.end();
      const timer = setTimeout(() => this.killNow(), timeoutMs);
      try {
        exit = await this.exitPromise;
      } finally {
        clearTimeout(timer);
      }
    }
    await this.groupGone(timeoutMs);
    return exit;
  }

  /**
   * Waits until no process of the group is left. After a SIGKILL of the group the shell can be reaped
   * while the server (a large Go process) is still being torn down, holding its port and database.
   */
  private async groupGone(timeoutMs: number): Promise<void> {
    const pgid = this.child.pid;
    if (pgid === undefined) return;
    const deadline = Date.now() + timeoutMs;
    let killed = false;
    for (;;) {
      const left = groupMembers(pgid);
      if (left.length === 0) return;
      if (Date.now() >= deadline) {
        if (killed) throw new Error(`${this.options.name}: processes ${left.join(', ')} survive SIGKILL`);
        this.killGroup();
        killed = true;
      }
      await sleep(50);
    }
  }

  /** Synchronous SIGKILL of the whole process group (shell, watcher and server). */
  killNow(): void {
    if (this.exitInfo) return;
    this.killGroup();
  }

  private killGroup(): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
