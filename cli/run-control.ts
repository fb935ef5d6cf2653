import type { WorkflowHandle } from '@temporalio/client';
import { sleep } from '../infra/local/wait';
import type { RunStatus } from '../workflows/api';
import { lastRunInput, requireRun, stateName } from './run-executions';
import { queryStatus } from './run-report';
import { TemporalSession, WorkerNeeds, openTemporalSession, workerNeedsOf } from './temporal-session';

/** The backend and slots a run's trainers use, so workers started for it match. */
export async function runWorkerNeeds(session: TemporalSession, runId: string): Promise<WorkerNeeds> {
  try {
    return workerNeedsOf(await lastRunInput(session.client, runId));
  } catch {
    return { backend: 'auto', workers: 1 };
  }
}

/**
 * The common start of commands that act on a running run (pause, cancel): connect, check that it runs,
 * and make sure its workflow and trainers are hosted, so what is asked takes effect.
 */
export async function controlRunningRun(
  runId: string,
  log: (line: string) => void,
): Promise<{ session: TemporalSession; handle: WorkflowHandle; needs: WorkerNeeds }> {
  const session = await openTemporalSession(log);
  const d = await requireRun(session.client, runId, session.namespace);
  if (d.status.name !== 'RUNNING') throw new Error(`run ${runId} is not running (it ${stateName(d)})`);
  const needs = await runWorkerNeeds(session, runId);
  await session.ensureWorker(needs);
  return { session, handle: session.client.workflow.getHandle(runId), needs };
}

/**
 * Polls the run until `done` holds for its status (or, without `done`, until it closes); returns the last
 * status, or null once the run has closed. A local worker that dies meanwhile is replaced.
 */
export async function waitForRun(
  session: TemporalSession,
  runId: string,
  needs: WorkerNeeds,
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
      await session.ensureWorker(needs, { recheck: true });
    }
    await sleep(1_000);
  }
}
