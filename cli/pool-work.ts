/**
 * What `sample --on-pool` and `inpaint --on-pool` share: finding the run's store, trainer pool and backend,
 * starting (or re-attaching to) a workflow by a deterministic ID, and reading its activities' heartbeats.
 */
import {
  Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowExecutionDescription,
  WorkflowHandle,
  defaultPayloadConverter,
} from '@temporalio/client';
import { CONTROL_TASK_QUEUE, TRAINER_TASK_QUEUE, TrainingRunInput } from '../workflows/api';
import { describeRun, lastRunInput } from './run-executions';
import { BACKENDS, absoluteStoreUri } from './run-input';
import type { TemporalSession } from './temporal-session';

export type Backend = (typeof BACKENDS)[number];

export interface PoolTarget {
  storeUri: string;
  /** The task queue whose trainers take the activities. */
  pool: string;
  backend: Backend;
}

/**
 * The run's store, pool and backend as its workflow started with them, each overridable. A run trained
 * without Temporal (`npm run train`) has none: then --store is required.
 */
export async function poolTarget(
  session: TemporalSession,
  runId: string,
  overrides: { store?: string; pool?: string; backend?: Backend },
): Promise<PoolTarget> {
  const input: TrainingRunInput | null = (await describeRun(session.client, runId))
    ? await lastRunInput(session.client, runId)
    : null;
  const store = overrides.store ? absoluteStoreUri(overrides.store) : input?.storeUri;
  if (!store) {
    throw new Error(`run ${runId} is not known to Temporal in namespace ${session.namespace}; pass --store`);
  }
  return {
    storeUri: store,
    pool: overrides.pool ?? input?.parallel?.pool ?? TRAINER_TASK_QUEUE,
    backend: overrides.backend ?? input?.backend ?? 'auto',
  };
}

/** Starts the workflow on the control queue, or attaches to the running one with the same ID. */
export async function startOrAttach(
  client: Client,
  workflowType: string,
  workflowId: string,
  input: unknown,
): Promise<{ handle: WorkflowHandle; attached: boolean }> {
  try {
    const handle = await client.workflow.start(workflowType, {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [input],
    });
    return { handle, attached: false };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    return { handle: client.workflow.getHandle(workflowId), attached: true };
  }
}

/** The latest heartbeat of each pending activity of one type. */
export function pendingHeartbeats<T>(d: WorkflowExecutionDescription, activityType: string): T[] {
  const beats: T[] = [];
  for (const activity of d.raw.pendingActivities ?? []) {
    if (activity.activityType?.name !== activityType) continue;
    const payload = activity.heartbeatDetails?.payloads?.[0];
    if (payload) beats.push(defaultPayloadConverter.fromPayload<T>(payload));
  }
  return beats;
}

/**
 * Waits for a workflow's result, calling `tick` about once a second meanwhile (progress, and replacing a
 * local trainer that died).
 */
export async function resultWithTicks<R>(handle: WorkflowHandle, tick: () => Promise<void>): Promise<R> {
  let done = false;
  const result = handle.result().finally(() => {
    done = true;
  });
  while (!done) {
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    if (!done) await tick().catch(() => undefined);
  }
  return (await result) as R;
}
