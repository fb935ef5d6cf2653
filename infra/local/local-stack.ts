import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { MissingToolError, resolveTool } from './binaries';
import { ensureTemporalCli } from '../setup/ensure-temporal-cli';
import { Daemon, daemonNames, logTail, processAlive, runningDaemon, startDaemon, stopDaemon } from './daemon';
import { registerSearchAttributes } from './register-search-attributes';
import { CLI_TYPE_NAMES, DDPM_SEARCH_ATTRIBUTES } from './search-attributes';
import type { BackendChoice } from '../../core/backend/names';
import { listNvidiaGpus } from '../../core/backend/nvidia';
import { parseAddress } from '../../coordinator/protocol';
import { TRAINER_TASK_QUEUE, slotTaskQueue } from '../../workflows/api';
import { activityQueuePollers, trainerQueuePollers } from './trainer-pollers';
import { sleep, waitUntil } from './wait';

/**
 * The local stack the CLI brings up when no Temporal address is configured: a Temporal dev server on a
 * SQLite file and a trainer worker, both detached daemons with pid and log files in one state dir, so a
 * run keeps going after the command that started it exits (or is killed).
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const HOST = '127.0.0.1';
const SERVER = { name: 'temporal', marker: 'start-dev' };
const WORKER = { name: 'worker', marker: 'trainer-worker' };
// Named with the 'worker' prefix so stop-local stops it with the trainers, before the server.
const CONTROL_WORKER = { name: 'worker-control', marker: 'trainer-worker' };
const COORDINATOR = { name: 'coordinator', marker: 'coordinator/main' };
const slotWorker = (slot: number) => ({ name: `worker-slot-${slot}`, marker: 'trainer-worker' });

export type WorkerBackend = BackendChoice;

export interface LocalStackSettings {
  /** Holds temporal.db, the pid and log files (DDPM_LOCAL_STACK_DIR; default <repo>/.cache/local-stack). */
  stateDir: string;
  /** Frontend gRPC port (DDPM_LOCAL_TEMPORAL_PORT; default 7233). */
  port: number;
  /** Web UI port (DDPM_LOCAL_UI_PORT; default 8233). */
  uiPort: number;
  /** Port of the data-parallel coordinator (DDPM_LOCAL_COORDINATOR_PORT; default 7077). */
  coordinatorPort: number;
  namespace: string;
}

export interface LocalServer {
  address: string;
  namespace: string;
  uiUrl: string;
  /** False when a server was already running (ours from an earlier command, or someone else's). */
  startedNow: boolean;
}

type Log = (line: string) => void;

function envPort(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new Error(`${name}: expected a port 1-65535, got '${raw}'`);
  return n;
}

export function localStackSettings(env: NodeJS.ProcessEnv = process.env): LocalStackSettings {
  return {
    stateDir: path.resolve(env.DDPM_LOCAL_STACK_DIR || path.join(REPO_ROOT, '.cache', 'local-stack')),
    port: envPort(env, 'DDPM_LOCAL_TEMPORAL_PORT', 7233),
    uiPort: envPort(env, 'DDPM_LOCAL_UI_PORT', 8233),
    coordinatorPort: envPort(env, 'DDPM_LOCAL_COORDINATOR_PORT', 7077),
    namespace: 'default',
  };
}

export function localAddress(settings: LocalStackSettings): string {
  return `${HOST}:${settings.port}`;
}

export function localCoordinatorAddress(settings: LocalStackSettings): string {
  return `${HOST}:${settings.coordinatorPort}`;
}

/**
 * The cluster key of the local coordinator and its trainers: random, made once, readable by this user
 * only, and handed to the daemons through their environment (never their command line or logs).
 */
function localCoordinatorKey(stateDir: string): string {
  const file = path.join(stateDir, 'coordinator.key');
  if (!existsSync(file))
    writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  return readFileSync(file, 'utf8').trim();
}

function tcpAnswers(address: string): Promise<boolean> {
  const { host, port } = parseAddress(address);
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    socket.setTimeout(1000);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/**
 * Cores for trainer slot `slot` of `workers` on this machine: an equal share each, so data-parallel
 * trainers on a CPU-only machine do not fight over the same cores. None when there are more trainers than
 * cores.
 */
export function slotCpus(slot: number, workers: number, cores = os.availableParallelism()): string | null {
  const share = Math.floor(cores / workers);
  if (share < 1) return null;
  const first = slot * share;
  return share === 1 ? `${first}` : `${first}-${first + share - 1}`;
}

/**
 * Starts the dev server unless one answers already; registers the search attributes either way. The
 * Temporal CLI is installed on first use, before the stack lock is taken (its build takes minutes).
 */
export async function ensureLocalServer(settings: LocalStackSettings, log: Log): Promise<LocalServer> {
  mkdirSync(settings.stateDir, { recursive: true });
  const running =
    runningDaemon(settings.stateDir, SERVER.name, SERVER.marker) !== null ||
    (await answers(localServer(settings)));
  if (!running) {
    try {
      await ensureTemporalCli(log);
    } catch (err) {
      throw new Error(`the local stack needs the Temporal CLI: ${(err as Error).message}`);
    }
  }
  return withStackLock(settings.stateDir, () => ensureServerLocked(settings, log));
}

function localServer(settings: LocalStackSettings): LocalServer {
  return {
    address: localAddress(settings),
    namespace: settings.namespace,
    uiUrl: `http://localhost:${settings.uiPort}`,
    startedNow: false,
  };
}

/**
 * Makes sure some worker polls both the workflow and the trainer queue; spawns a detached one when none
 * does (or waits for ours if it is still starting). Resolves once one polls, or warns after a while;
 * with `readyTimeoutMs` 0 it returns at once (a periodic check that only replaces a dead worker).
 */
/**
 * Ensures the two local worker daemons poll: a control worker for the workflow queue (no TF.js, so
 * workflow tasks and queries never wait behind a training step) and a trainer for the activity queue.
 */
export async function ensureLocalWorker(
  settings: LocalStackSettings,
  server: LocalServer,
  backend: WorkerBackend,
  log: Log,
  readyTimeoutMs = 180_000,
  /** Data-parallel trainer slots wanted (with a coordinator); 1: the shared trainer only. */
  workers = 1,
): Promise<void> {
  await withStackLock(settings.stateDir, async () => {
    const connection = await Connection.connect({ address: server.address, connectTimeout: 5_000 });
    try {
      const trainerScript = path.join(REPO_ROOT, 'workers', 'trainer-worker.ts');
      const roles: {
        daemon: { name: string; marker: string };
        what: string;
        script: string;
        args: string[];
        polled: () => Promise<boolean>;
      }[] = [
        {
          daemon: CONTROL_WORKER,
          what: 'control worker (workflows)',
          script: trainerScript,
          args: ['--no-activities'],
          polled: async () => (await trainerQueuePollers(connection, server.namespace)).control > 0,
        },
        {
          daemon: WORKER,
          what: 'trainer worker',
          script: trainerScript,
          args: ['--backend', backend, '--no-workflows'],
          polled: async () => (await trainerQueuePollers(connection, server.namespace)).trainer > 0,
        },
      ];
      if (workers > 1) {
        const coordinator = localCoordinatorAddress(settings);
        roles.push({
          daemon: COORDINATOR,
          what: `coordinator on ${coordinator}`,
          script: path.join(REPO_ROOT, 'coordinator', 'main.ts'),
          args: ['--host', HOST, '--port', String(settings.coordinatorPort)],
          polled: () => tcpAnswers(coordinator),
        });
        // One GPU per trainer where the machine has enough NVIDIA GPUs, else a share of the cores.
        const gpus = listNvidiaGpus().length >= workers;
        for (let slot = 0; slot < workers; slot++) {
          const cpus = gpus ? null : slotCpus(slot, workers);
          roles.push({
            daemon: slotWorker(slot),
            what: `trainer slot ${slot}${gpus ? ` (GPU ${slot})` : cpus ? ` (cores ${cpus})` : ''}`,
            script: trainerScript,
            args: [
              ...['--backend', backend, '--no-workflows', '--no-shared', '--slot', String(slot)],
              ...(gpus ? ['--gpu', String(slot)] : cpus ? ['--cpus', cpus] : []),
            ],
            polled: async () =>
              (await activityQueuePollers(
                connection,
                server.namespace,
                slotTaskQueue(TRAINER_TASK_QUEUE, slot),
              )) > 0,
          });
        }
      }
      const key = workers > 1 ? localCoordinatorKey(settings.stateDir) : undefined;
      for (const role of roles) {
        if (await role.polled()) continue;
        let worker = runningDaemon(settings.stateDir, role.daemon.name, role.daemon.marker);
        if (worker && !processAlive(worker.pid)) {
          // The process started is gone, but others of its group live on without polling: start afresh.
          await stopDaemon(worker, 10_000);
          worker = null;
        }
        if (worker) {
          if (readyTimeoutMs === 0) continue;
          log(`waiting for the local ${role.what} (pid ${worker.pid}) to start polling`);
        } else {
          worker = startDaemon({
            ...role.daemon,
            // Node itself with tsx's loader, not the tsx CLI: the CLI runs the script in a child process,
            // so the pid recorded would be a wrapper's, and a SIGKILL to it would orphan the real worker.
            command: process.execPath,
            args: ['--import', 'tsx', role.script, ...role.args],
            cwd: REPO_ROOT,
            env: {
              ...process.env,
              TEMPORAL_ADDRESS: server.address,
              TEMPORAL_NAMESPACE: server.namespace,
              ...(key && { DDPM_COORDINATOR_KEY: key }),
            },
            stateDir: settings.stateDir,
          });
          log(`started a ${role.what} (pid ${worker.pid}, log ${worker.logFile})`);
        }
        const started = worker;
        if (readyTimeoutMs === 0) continue;
        try {
          await waitUntil(role.what, role.polled, {
            timeoutMs: readyTimeoutMs,
            intervalMs: 500,
            giveUp: () => (processAlive(started.pid) ? undefined : `exited: ${logTail(started.logFile, 3)}`),
          });
        } catch (err) {
          if (!processAlive(started.pid)) throw err;
          log(`the ${role.what} is not polling yet (see ${started.logFile}); the run starts once it does`);
        }
      }
    } finally {
      await connection.close();
    }
  });
}

export interface StoppedDaemon {
  name: string;
  pid: number;
  how: 'stopped' | 'killed';
}

/** Stops the local daemons, workers first (they checkpoint through the server), then the server. */
export async function stopLocalStack(
  settings: LocalStackSettings,
  timeoutMs: number,
): Promise<StoppedDaemon[]> {
  const names = daemonNames(settings.stateDir);
  const workers = names.filter((n) => n.startsWith(WORKER.name));
  const coordinator = names.filter((n) => n === COORDINATOR.name);
  const stopped: StoppedDaemon[] = [];
  for (const [group, marker] of [
    [workers, WORKER.marker],
    [coordinator, COORDINATOR.marker],
    [names.filter((n) => n === SERVER.name), SERVER.marker],
  ] as const) {
    const running = group
      .map((name) => runningDaemon(settings.stateDir, name, marker))
      .filter((d): d is Daemon => d !== null);
    const results = await Promise.all(running.map((d) => stopDaemon(d, timeoutMs)));
    running.forEach((d, i) => stopped.push({ name: d.name, pid: d.pid, how: results[i] }));
  }
  return stopped;
}

/** Pids of the local daemons that are running now (for status lines and tests). */
export function localDaemonPids(settings: LocalStackSettings): Record<string, number> {
  const pids: Record<string, number> = {};
  for (const name of daemonNames(settings.stateDir)) {
    const marker =
      name === SERVER.name ? SERVER.marker : name === COORDINATOR.name ? COORDINATOR.marker : WORKER.marker;
    const d = runningDaemon(settings.stateDir, name, marker);
    if (d) pids[name] = d.pid;
  }
  return pids;
}

async function ensureServerLocked(settings: LocalStackSettings, log: Log): Promise<LocalServer> {
  const server = localServer(settings);
  const { address } = server;
  const stateFile = path.join(settings.stateDir, 'stack.json');
  const ours = runningDaemon(settings.stateDir, SERVER.name, SERVER.marker);
  if (ours) {
    const recorded = existsSync(stateFile)
      ? (JSON.parse(readFileSync(stateFile, 'utf8')) as { port?: number })
      : {};
    if (recorded.port !== undefined && recorded.port !== settings.port) {
      throw new Error(
        `the local Temporal server of ${settings.stateDir} runs on port ${recorded.port}, not ${settings.port}: ` +
          `stop it with 'npm run stop-local' or set DDPM_LOCAL_TEMPORAL_PORT=${recorded.port}`,
      );
    }
    await waitForServer(server, ours);
  } else if (await answers(server)) {
    log(`using the Temporal server already listening on ${address}`);
  } else {
    let binary: string;
    try {
      binary = resolveTool('temporal');
    } catch (err) {
      if (!(err instanceof MissingToolError)) throw err;
      throw new Error(
        `the local stack needs the Temporal CLI: ${err.message}; or set TEMPORAL_ADDRESS to use a running server`,
      );
    }
    const daemon = startDaemon({
      ...SERVER,
      command: binary,
      args: devServerArgs(settings),
      stateDir: settings.stateDir,
    });
    writeFileSync(stateFile, JSON.stringify({ port: settings.port, uiPort: settings.uiPort }) + '\n');
    log(`started a Temporal dev server on ${address} (pid ${daemon.pid}, state in ${settings.stateDir})`);
    await waitForServer(server, daemon);
    server.startedNow = true;
  }
  await withConnection(address, (c) => registerSearchAttributes(c, settings.namespace));
  return server;
}

function devServerArgs(settings: LocalStackSettings): string[] {
  const args = ['server', 'start-dev', '--db-filename', path.join(settings.stateDir, 'temporal.db')];
  args.push('--ip', HOST, '--port', String(settings.port), '--ui-port', String(settings.uiPort));
  args.push('--log-level', 'warn');
  if (settings.namespace !== 'default') args.push('--namespace', settings.namespace);
  for (const [name, type] of Object.entries(DDPM_SEARCH_ATTRIBUTES)) {
    args.push('--search-attribute', `${name}=${CLI_TYPE_NAMES[type]}`);
  }
  return args;
}

async function answers(server: LocalServer): Promise<boolean> {
  try {
    await withConnection(server.address, (c) =>
      c.workflowService.describeNamespace({ namespace: server.namespace }),
    );
    return true;
  } catch {
    return false;
  }
}

async function waitForServer(server: LocalServer, daemon: Daemon): Promise<void> {
  await waitUntil(`Temporal dev server on ${server.address}`, () => answers(server), {
    // A first start (new SQLite schema, a just-built binary not yet in the page cache) took over 60 s
    // on a heavily loaded 2-core machine; a server that dies is noticed at once (giveUp) regardless.
    timeoutMs: 180_000,
    intervalMs: 250,
    giveUp: () => (processAlive(daemon.pid) ? undefined : `exited: ${logTail(daemon.logFile, 3)}`),
  });
}

async function withConnection<T>(address: string, use: (c: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address, connectTimeout: 2_000 });
  try {
    return await use(connection);
  } finally {
    await connection.close();
  }
}

/**
 * One command at a time sets the stack up, so two concurrent start-runs cannot spawn two servers or
 * workers. A lock left by a dead process is taken over.
 */
async function withStackLock<T>(stateDir: string, fn: () => Promise<T>): Promise<T> {
  const lockFile = path.join(stateDir, 'stack.lock');
  const deadline = Date.now() + 5 * 60_000;
  while (true) {
    try {
      writeFileSync(lockFile, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let text: string;
      let ageMs: number;
      try {
        text = readFileSync(lockFile, 'utf8').trim();
        ageMs = Date.now() - statSync(lockFile).mtimeMs;
      } catch {
        continue; // released meanwhile
      }
      const holder = Number(text);
      // An empty file is a lock being written right now, unless it has been empty for a while.
      const abandoned = text === '' ? ageMs > 10_000 : !processAlive(holder);
      if (abandoned) {
        rmSync(lockFile, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another command (pid ${holder}) holds ${lockFile}`);
      await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockFile, { force: true });
  }
}
