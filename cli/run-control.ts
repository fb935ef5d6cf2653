import type { WorkerBackend } from '../infra/local/local-stack';
import { sleep } from '../infra/local/wait';
import type { RunStatus } from '../workflows/api';
import { lastRunInput } from './run-executions';
import { queryStatus } from './run-report';
import type { TemporalSession } from './temporal-session';

/** The backend a run's trainers use, so a worker started for it initialises that one. */
export async function runBackend(session: TemporalSession, runId: string): Promise<WorkerBackend> {
  try {
    return (await lastRunInput(session.client, runId)).backend;
  } catch {
    return 'auto';
  }
}

/**
 * Polls the run until `done` holds for its status (or, without `done`, until it closes); returns the last
 * status, or null once the run has closed. A local worker that dies meanwhile is replaced.
 */
export async function waitForRun(
  session: TemporalSession,
  runId: string,
  backend: WorkerBackend,
  done?: (s: RunStatus) => boolean,
): Promise<RunStatus | null> {
  const handle = session.client.workflow.getHandle(runId);
  let workerCheckedAt = Date.now();
  while (true) {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return null;
    const s = done ? await queryStatus(session.client, handle) : null;
    if (s && done?.(s)) return s;
    if (Date.now() - workerCheckedAt > 15_000) {
      workerCheckedAt = Date.now();
      await session.ensureWorker(backend, { recheck: true });
    }
    await sleep(1_000);
  }
}
