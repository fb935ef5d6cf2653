import os from 'node:os';
import type { Connection } from '@temporalio/client';
import { CONTROL_TASK_QUEUE, TRAINER_TASK_QUEUE } from '../../workflows/api';
import { processAlive } from './daemon';

// temporal.api.enums.v1 numbers, as the workflow service speaks them.
const TASK_QUEUE_KIND_NORMAL = 1;
const TASK_QUEUE_TYPE_WORKFLOW = 1;
const TASK_QUEUE_TYPE_ACTIVITY = 2;

/**
 * The server keeps a poller listed for minutes after its worker died. A worker on this host is judged by
 * its process (the SDK's default identity is "<pid>@<hostname>"); a remote one by how recently it polled
 * (a busy trainer stops polling its activity queue, so the window is generous).
 */
const REMOTE_POLLER_WINDOW_MS = 3 * 60_000;

export interface TrainerQueuePollers {
  /** Live pollers of the workflow task queue (hosts the TrainingRun workflow). */
  control: number;
  /** Live pollers of the trainer activity queue (dataset, training, sampling). */
  trainer: number;
}

interface PollerInfoLike {
  identity?: string | null;
  lastAccessTime?: { seconds?: unknown; nanos?: number | null } | null;
}

/** How many living workers poll one task queue, of workflow or activity tasks. */
async function livePollers(
  connection: Connection,
  namespace: string,
  name: string,
  taskQueueType: number,
): Promise<number> {
  const { pollers } = await connection.workflowService.describeTaskQueue({
    namespace,
    taskQueue: { name, kind: TASK_QUEUE_KIND_NORMAL },
    taskQueueType,
  });
  return (pollers ?? []).filter((p) => pollerAlive(p)).length;
}

/** How many living workers poll one activity task queue (e.g. a trainer slot's). */
export function activityQueuePollers(
  connection: Connection,
  namespace: string,
  taskQueue: string,
): Promise<number> {
  return livePollers(connection, namespace, taskQueue, TASK_QUEUE_TYPE_ACTIVITY);
}

/** How many living workers poll the project's two task queues. */
export async function trainerQueuePollers(
  connection: Connection,
  namespace: string,
): Promise<TrainerQueuePollers> {
  const [control, trainer] = await Promise.all([
    livePollers(connection, namespace, CONTROL_TASK_QUEUE, TASK_QUEUE_TYPE_WORKFLOW),
    activityQueuePollers(connection, namespace, TRAINER_TASK_QUEUE),
  ]);
  return { control, trainer };
}

function pollerAlive(poller: PollerInfoLike, now = Date.now()): boolean {
  const local = /^(\d+)@(.+)$/.exec(poller.identity ?? '');
  if (local && local[2] === os.hostname()) return processAlive(Number(local[1]));
  const seconds = Number(poller.lastAccessTime?.seconds ?? 0);
  return now - seconds * 1000 < REMOTE_POLLER_WINDOW_MS;
}
