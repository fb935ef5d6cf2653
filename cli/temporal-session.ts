import { Client, Connection } from '@temporalio/client';
import {
  LocalServer,
  WorkerBackend,
  ensureLocalServer,
  ensureLocalWorker,
  localStackSettings,
} from '../infra/local/local-stack';
import { activityQueuePollers, trainerQueuePollers } from '../infra/local/trainer-pollers';
import { prepareNativeBackend } from '../infra/setup/ensure-native-backend';
import { CONTROL_TASK_QUEUE, TRAINER_TASK_QUEUE, TrainingRunInput, slotTaskQueue } from '../workflows/api';
import { temporalSettings } from '../workers/temporal-config';

/** What a run needs polling for it: trainers on its backend, and its number of data-parallel slots. */
export interface WorkerNeeds {
  backend: WorkerBackend;
  workers: number;
}

/** The worker needs of a run input (one trainer unless it is data-parallel). */
export function workerNeedsOf(input: TrainingRunInput): WorkerNeeds {
  return { backend: input.backend, workers: input.parallel?.workers ?? 1 };
}

export interface TemporalSession {
  client: Client;
  namespace: string;
  /** A Web UI link to the run (local stack), or its namespace and server (a configured cluster). */
  whereToSee(runId: string): string;
  /**
   * Makes sure a trainer worker polls: locally by starting one if needed; on a configured cluster by
   * warning when none does (workers there are deployed, not spawned by the CLI). `recheck` is the quiet,
   * non-blocking form for long waits: it replaces a local worker that died and warns at most once.
   */
  ensureWorker(needs: WorkerNeeds, opts?: { recheck?: boolean }): Promise<void>;
  close(): Promise<void>;
}

type Log = (line: string) => void;

/**
 * Connects to the configured Temporal service (standard TEMPORAL_* environment / profile), or, with none
 * configured, to the local stack, starting its dev server when it is not running.
 */
export async function openTemporalSession(log: Log): Promise<TemporalSession> {
  const t = temporalSettings();
  if (!t.configured) {
    const settings = localStackSettings();
    const server = await ensureLocalServer(settings, log);
    const session = await connect(server.address, { address: server.address }, server.namespace);
    return {
      ...session,
      whereToSee: (runId) => webUiLink(server, runId),
      ensureWorker: async (needs, opts) => {
        if (!opts?.recheck) await prepareNativeBackend(needs.backend, log);
        await ensureLocalWorker(
          settings,
          server,
          needs.backend,
          log,
          opts?.recheck ? 0 : undefined,
          needs.workers,
        );
      },
    };
  }
  const session = await connect(t.address, t.connectionOptions, t.namespace);
  let warned = false;
  return {
    ...session,
    whereToSee: (runId) => `workflow ${runId} in namespace ${t.namespace} on ${t.address}`,
    ensureWorker: async ({ workers }, opts) => {
      if (opts?.recheck && warned) return;
      try {
        const p = await trainerQueuePollers(session.connection, t.namespace);
        if (p.control === 0 || p.trainer === 0) {
          warned = true;
          log(
            `warning: no worker polls ${p.control === 0 ? CONTROL_TASK_QUEUE : TRAINER_TASK_QUEUE} on ${t.address}; ` +
              `the run waits until one does (start one with 'npm run worker')`,
          );
        }
        const slots = workers > 1 ? Array.from({ length: workers }, (_, k) => k) : [];
        const idle: number[] = [];
        for (const k of slots) {
          const queue = slotTaskQueue(TRAINER_TASK_QUEUE, k);
          if ((await activityQueuePollers(session.connection, t.namespace, queue)) === 0) idle.push(k);
        }
        if (idle.length > 0) {
          warned = true;
          log(
            `warning: no trainer polls slot${idle.length > 1 ? 's' : ''} ${idle.join(', ')} on ${t.address}; ` +
              `each segment goes on with the slots that join (at least --min-workers); start the others with ` +
              `'npm run worker -- --no-workflows --slot <k>'`,
          );
        }
      } catch {
        // Describing task queues may be outside this API key's permissions; the run itself is unaffected.
      }
    },
  };
}

function webUiLink(server: LocalServer, runId: string): string {
  return `${server.uiUrl}/namespaces/${encodeURIComponent(server.namespace)}/workflows/${encodeURIComponent(runId)}`;
}

async function connect(
  address: string,
  options: Parameters<typeof Connection.connect>[0],
  namespace: string,
): Promise<Pick<TemporalSession, 'client' | 'namespace' | 'close'> & { connection: Connection }> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ connectTimeout: 10_000, ...options });
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new Error(`cannot connect to Temporal at ${address}: ${reason}`);
  }
  return {
    connection,
    client: new Client({ connection, namespace }),
    namespace,
    close: () => connection.close(),
  };
}
