/**
 * The local stack's daemons are tracked by the process that does the work: the pid in the state dir is the
 * trainer itself, so a SIGKILL of that pid leaves no trainer behind (none orphaned, still polling and
 * training), the stack sees the trainer gone and starts another, and stop-local stops everything. Real
 * processes throughout: a Temporal dev server daemon, the control and trainer worker daemons.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { findFreePort } from '../infra/local';
import { groupMembers, processAlive } from '../infra/local/daemon';
import {
  LocalServer,
  LocalStackSettings,
  ensureLocalServer,
  ensureLocalWorker,
  localDaemonPids,
  localStackSettings,
  stopLocalStack,
} from '../infra/local/local-stack';
import { trainerQueuePollers } from '../infra/local/trainer-pollers';
import { sleep } from '../infra/local/wait';

jest.setTimeout(300_000);

const stateDir = mkdtempSync(path.join(os.tmpdir(), 'ddpm-local-stack-'));
const lines: string[] = [];
const log = (line: string) => lines.push(line);
let settings: LocalStackSettings;
let server: LocalServer;

beforeAll(async () => {
  settings = localStackSettings({
    DDPM_LOCAL_STACK_DIR: stateDir,
    DDPM_LOCAL_TEMPORAL_PORT: String(await findFreePort()),
    DDPM_LOCAL_UI_PORT: String(await findFreePort()),
    DDPM_LOCAL_COORDINATOR_PORT: String(await findFreePort()),
  });
  server = await ensureLocalServer(settings, log);
});

afterAll(async () => {
  await stopLocalStack(settings, 10_000);
  rmSync(stateDir, { recursive: true, force: true });
});

/** Trainer processes of this stack (its server's address in their environment), anywhere on the machine. */
function trainerProcesses(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
        const trainer = cmd.includes('trainer-worker') && !cmd.includes('--no-activities');
        return trainer && env.includes(`TEMPORAL_ADDRESS=${server.address}`) && processAlive(pid);
      } catch {
        return false; // gone meanwhile
      }
    });
}

async function trainerPollers(): Promise<number> {
  const connection = await Connection.connect({ address: server.address });
  try {
    return (await trainerQueuePollers(connection, server.namespace)).trainer;
  } finally {
    await connection.close();
  }
}

test('SIGKILL of the trainer pid in the state dir leaves no trainer running; the stack replaces it', async () => {
  await ensureLocalWorker(settings, server, 'tensorflow', log);
  const first = localDaemonPids(settings).worker;
  expect(first).toBeDefined();
  expect(readFileSync(path.join(stateDir, 'worker.pid'), 'utf8').trim()).toBe(String(first));
  expect(await trainerPollers()).toBe(1);
  // The recorded pid is the trainer itself: the only trainer process of this stack.
  expect(trainerProcesses()).toEqual([first]);

  process.kill(first, 'SIGKILL'); // that pid alone, as a user or an OOM killer would
  const deadline = Date.now() + 20_000;
  while ((processAlive(first) || groupMembers(first).length > 0) && Date.now() < deadline) await sleep(100);
  expect(groupMembers(first)).toEqual([]);
  expect(trainerProcesses()).toEqual([]);
  expect(localDaemonPids(settings).worker).toBeUndefined();
  expect(await trainerPollers()).toBe(0);

  await ensureLocalWorker(settings, server, 'tensorflow', log);
  const second = localDaemonPids(settings).worker;
  expect(second).toBeDefined();
  expect(second).not.toBe(first);
  expect(await trainerPollers()).toBe(1);
  expect(trainerProcesses()).toEqual([second]);

  const stopped = await stopLocalStack(settings, 10_000);
  expect(stopped.map((d) => d.name).sort()).toEqual(['temporal', 'worker', 'worker-control']);
  expect(trainerProcesses()).toEqual([]);
  expect(groupMembers(second!)).toEqual([]);
});
