import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sleep } from './wait';

/**
 * Background services that must outlive the command that started them (unlike ManagedProcess, which
 * dies with its parent): a detached process group, output appended to `<name>.log`, its pid in
 * `<name>.pid`, both in a state directory. Stopping signals the whole group, so a wrapper (tsx) and the
 * process it runs go together.
 */
export interface DaemonSpec {
  /** File stem for the pid and log files, e.g. "temporal" -> temporal.pid, temporal.log. */
  name: string;
  command: string;
  args: string[];
  stateDir: string;
  /** Text the process's command line must contain; guards against a recycled pid. */
  marker: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface Daemon {
  name: string;
  pid: number;
  pidFile: string;
  logFile: string;
  marker: string;
}

export function daemonFiles(stateDir: string, name: string): { pidFile: string; logFile: string } {
  return { pidFile: path.join(stateDir, `${name}.pid`), logFile: path.join(stateDir, `${name}.log`) };
}

export function startDaemon(spec: DaemonSpec): Daemon {
  const { pidFile, logFile } = daemonFiles(spec.stateDir, spec.name);
  const out = openSync(logFile, 'a');
  try {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      // Own session and process group: no terminal Ctrl-C reaches it, and no parent's exit stops it.
      detached: true,
      stdio: ['ignore', out, out],
    });
    if (child.pid === undefined) throw new Error(`could not start ${spec.command}`);
    child.unref();
    writeFileSync(pidFile, `${child.pid}\n`);
    return { name: spec.name, pid: child.pid, pidFile, logFile, marker: spec.marker };
  } finally {
    closeSync(out);
  }
}

/**
 * The daemon a pid file names, if a process of its group is still alive and still ours (its command line
 * has the marker). The group counts, not only the process started: one that died (say, SIGKILLed) may
 * have left children running, which stopDaemon must still find and stop.
 */
export function runningDaemon(stateDir: string, name: string, marker: string): Daemon | null {
  const { pidFile, logFile } = daemonFiles(stateDir, name);
  if (!existsSync(pidFile)) return null;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  const ours =
    Number.isInteger(pid) && pid > 0 && groupMembers(pid).some((p) => commandLine(p).includes(marker));
  if (!ours) {
    rmSync(pidFile, { force: true });
    return null;
  }
  return { name, pid, pidFile, logFile, marker };
}

/** Names of the daemons with pid files in the state dir (alive or not). */
export function daemonNames(stateDir: string): string[] {
  if (!existsSync(stateDir)) return [];
  return readdirSync(stateDir)
    .filter((f) => f.endsWith('.pid'))
    .map((f) => f.slice(0, -'.pid'.length));
}

/**
 * SIGTERM to the daemon's process group, then SIGKILL after `timeoutMs`; resolves once no process of
 * the group is left, and removes the pid file.
 */
export async function stopDaemon(daemon: Daemon, timeoutMs: number): Promise<'stopped' | 'killed'> {
  signalGroup(daemon.pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  let how: 'stopped' | 'killed' = 'stopped';
  while (groupMembers(daemon.pid).length > 0) {
    if (Date.now() >= deadline && how === 'stopped') {
      signalGroup(daemon.pid, 'SIGKILL');
      how = 'killed';
    }
    await sleep(100);
  }
  rmSync(daemon.pidFile, { force: true });
  return how;
}

/** The last lines of a daemon's log, for error messages. */
export function logTail(logFile: string, lines = 5): string {
  if (!existsSync(logFile)) return '';
  return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is gone already.
  }
}

/** Alive and not a zombie (an exited child nobody reaped still answers kill(pid, 0)). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const stat = procStat(pid);
  return stat === null || stat.state !== 'Z';
}

/** Living processes of a process group (Linux: from /proc; elsewhere: the leader, if alive). */
export function groupMembers(pgid: number): number[] {
  if (process.platform !== 'linux') {
    try {
      process.kill(-pgid, 0);
      return [pgid];
    } catch {
      return [];
    }
  }
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = procStat(pid);
    if (stat && stat.pgrp === pgid && (stat.state !== 'Z' || threadsExiting(pid))) members.push(pid);
  }
  return members;
}

/**
 * A multi-threaded process (a Go server) whose main thread is already a zombie while other threads are
 * still exiting: they hold its files and sockets until the last one is gone.
 */
function threadsExiting(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      const stat = procStat(Number(tid), `/proc/${pid}/task/${tid}/stat`);
      return stat !== null && stat.state !== 'Z' && stat.state !== 'X';
    });
  } catch {
    return false;
  }
}

function procStat(pid: number, file = `/proc/${pid}/stat`): { state: string; pgrp: number } | null {
  if (process.platform !== 'linux') return null;
  try {
    const text = readFileSync(file, 'utf8');
    // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses, so split after the last ')'.
    const [state, , pgrp] = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state, pgrp: Number(pgrp) };
  } catch {
    return null;
  }
}

function commandLine(pid: number): string {
  try {
    if (process.platform === 'linux') return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    return execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' });
  } catch {
    return '';
  }
}
