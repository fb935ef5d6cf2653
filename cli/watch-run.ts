import { Client } from '@temporalio/client';
import { sleep } from '../infra/local/wait';
import type { RunStatus } from '../workflows/api';
import { ProgressLine, progressLine } from './progress';
import { objectUri } from './run-input';
import {
  RunOutcome,
  formatNumber,
  innermostMessage,
  liveStatus,
  queryStatus,
  runOutcome,
  segmentHeartbeat,
} from './run-report';

const DETACHED = Symbol('detached');
const GIVE_UP_UNREACHABLE_MS = 5 * 60_000;

export type WatchResult = RunOutcome | { state: 'detached'; status: RunStatus | null };

export interface WatchOptions {
  /** Seconds between polls of the run. */
  everySeconds?: number;
  /** Seconds between plain progress lines when stderr is not a terminal. */
  plainEverySeconds?: number;
  log: (line: string) => void;
  /** Called now and then while the run is open, so a trainer worker that died is replaced. */
  keepWorker?: () => Promise<void>;
}

const KEEP_WORKER_EVERY_MS = 15_000;

/**
 * Shows a live progress line for a run (step/total, loss, img/s, phase, ETA) until it closes, or until
 * Ctrl-C, which only stops the watching: the run belongs to Temporal and its workers, not to this process.
 */
export async function watchRun(client: Client, runId: string, opts: WatchOptions): Promise<WatchResult> {
  const handle = client.workflow.getHandle(runId);
  let detach = () => undefined as void;
  const detached = new Promise<typeof DETACHED>((resolve) => (detach = () => resolve(DETACHED)));
  // Ctrl-C must not wait for a slow query: every wait below races against it.
  const unlessDetached = <T>(work: Promise<T>) => Promise.race([work, detached]);
  process.on('SIGINT', detach);
  let progress: ProgressLine | undefined;
  let last: RunStatus | null = null;
  let lastPhase = '';
  let lastSampleKey: string | null | undefined;
  let unreachableSince: number | null = null;
  let lastComplaint = 0;
  let workerCheckedAt = Date.now();
  try {
    while (true) {
      const d = await unlessDetached(handle.describe().catch((err: unknown) => err as Error));
      if (d === DETACHED) return { state: 'detached', status: last };
      if (d instanceof Error) {
        // A restarting server is not the end of the run: keep trying for a while, and say so.
        const now = Date.now();
        unreachableSince ??= now;
        const reason = d.message.split('\n')[0];
        if (now - unreachableSince > GIVE_UP_UNREACHABLE_MS) {
          throw new Error(
            `lost Temporal for ${GIVE_UP_UNREACHABLE_MS / 60_000} minutes (${reason}); the run is not affected`,
          );
        }
        if (now - lastComplaint > 30_000) {
          opts.log(`cannot reach Temporal (${reason}); still trying`);
          lastComplaint = now;
        }
      } else if (d.status.name !== 'RUNNING') {
        progress?.stop();
        progress = undefined;
        return await runOutcome(handle, d);
      } else {
        unreachableSince = null;
        if (opts.keepWorker && Date.now() - workerCheckedAt > KEEP_WORKER_EVERY_MS) {
          workerCheckedAt = Date.now();
          await unlessDetached(
            opts
              .keepWorker()
              .catch((err: unknown) =>
                opts.log(`warning: checking the trainer worker: ${innermostMessage(err)}`),
              ),
          );
        }
        // A trainer busy in a long micro-batch may answer queries late; the heartbeat still moves on.
        const queried = await unlessDetached(queryStatus(client, handle));
        if (queried === DETACHED) return { state: 'detached', status: last };
        last = queried ?? last;
        if (last && last.lastSampleKey !== lastSampleKey) {
          // The first status only sets the baseline: a re-attach does not repeat grids already announced.
          if (lastSampleKey !== undefined && last.lastSampleKey) {
            const line = `samples: ${objectUri(last.storeUri, last.lastSampleKey)}`;
            if (progress) progress.log(line);
            else opts.log(line);
          }
          lastSampleKey = last.lastSampleKey;
        }
        if (last) {
          const live = liveStatus(last, segmentHeartbeat(d));
          const phase = live.activity && live.activity !== 'training' ? live.activity : live.phase;
          if (!process.stderr.isTTY && phase !== lastPhase && phase !== 'training')
            opts.log(`${runId}: ${phase}`);
          lastPhase = phase;
          progress ??= progressLine(runId, live.totalSteps, live.step, opts.plainEverySeconds ?? 10);
          progress.update(live.step, {
            loss: formatNumber(live.loss),
            'img/s': formatNumber(live.imagesPerSec, 3),
            phase: live.note ? `${phase} (${live.note})` : phase,
          });
        }
      }
      if ((await unlessDetached(sleep((opts.everySeconds ?? 2) * 1000))) === DETACHED) {
        return { state: 'detached', status: last };
      }
    }
  } finally {
    process.off('SIGINT', detach);
    progress?.stop();
  }
}
