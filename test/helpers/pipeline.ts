/**
 * Real multi-process pipeline for tests: a Temporal dev server, the workflow worker in this process, and
 * trainer workers as child processes that tests can SIGKILL. Nothing here is mocked.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  Client,
  Connection,
  WorkflowHandle,
  WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { startCoordinatorProcess } from '../../coordinator/spawn';
import { CheckpointRepository } from '../../core/checkpoint/repository';
import { loadImageDataset, writePngGrid } from '../../core/data';
import { Trainer } from '../../core/train/trainer';
import type { RunConfig } from '../../core/presets';
import { Purpose, Rng } from '../../core/rng';
import { TemporalDevServer } from '../../infra/local';
import { microConfig as microModel } from './micro-config';
import { openStore } from '../../store';
import {
  CONTROL_TASK_QUEUE,
  RunStatus,
  SegmentHeartbeat,
  TrainingRunInput,
  WORKFLOW_TYPE,
  statusQuery,
} from '../../workflows/api';

const REPO = resolve(__dirname, '..', '..');

/** The micro U-Net (see micro-config.ts): ~0.2 s per step on the native backend. */
export function microConfig(totalSteps: number): RunConfig {
  return microModel({ seed: 5, batchSize: 8, microBatchSize: 4, warmupSteps: 5, emaDecay: 0.9, totalSteps });
}

/** A folder of 8x8 RGB PNGs with deterministic pixels. */
export async function writeMicroDataset(dir: string, count = 24): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const rng = new Rng([77, Purpose.Evaluation]);
  for (let i = 0; i < count; i++) {
    const pixels = Uint8Array.from({ length: 8 * 8 * 3 }, () => rng.int(256));
    await writePngGrid(join(dir, `img-${String(i).padStart(3, '0')}.png`), pixels, 1, 8, 8, 3, {
      padding: 0,
    });
  }
  return dir;
}

/** Trains `config` without any orchestration, in this process, on the active backend: the reference. */
export async function uninterruptedParams(config: RunConfig, dataset: string): Promise<Float32Array> {
  const data = await loadImageDataset(dataset);
  const trainer = new Trainer({ config, data });
  while (trainer.currentStep < config.train.totalSteps) await trainer.step();
  const { params } = await trainer.hostState();
  trainer.dispose();
  return params;
}

export const sameBits = (a: Float32Array, b: Float32Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

export class TrainerProcess {
  readonly output: string[] = [];
  private exitPromise: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    const collect = (chunk: Buffer) => this.output.push(chunk.toString());
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exitPromise = new Promise((res) => child.on('exit', (code) => res(code)));
  }

  get log(): string {
    return this.output.join('');
  }

  async ready(timeoutMs = 60_000): Promise<void> {
    const started = Date.now();
    while (!this.log.includes('READY')) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`trainer worker exited before it was ready:\n${this.log}`);
      }
      if (Date.now() - started > timeoutMs)
        throw new Error(`trainer worker not ready in ${timeoutMs} ms:\n${this.log}`);
      await sleep(100);
    }
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    this.child.kill(signal);
    return this.exitPromise;
  }

  exited(): Promise<number | null> {
    return this.exitPromise;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class PipelineHarness {
  readonly workdir = mkdtempSync(join(tmpdir(), 'ddpm-pipeline-'));
  private trainers: TrainerProcess[] = [];
  private workflowWorker!: Worker;
  private workflowConnection!: NativeConnection;
  private workflowWorkerDone!: Promise<void>;
  client!: Client;
  server!: TemporalDevServer;

  static async start(): Promise<PipelineHarness> {
    const h = new PipelineHarness();
    Runtime.install({ logger: new DefaultLogger('WARN') });
    h.server = await TemporalDevServer.start({ dbFile: join(h.workdir, 'temporal.db'), headless: true });
    h.client = new Client({ connection: await Connection.connect({ address: h.server.address }) });
    await h.startWorkflowWorker();
    return h;
  }

  private async startWorkflowWorker(): Promise<void> {
    this.workflowConnection = await NativeConnection.connect({ address: this.server.address });
    this.workflowWorker = await Worker.create({
      connection: this.workflowConnection,
      taskQueue: CONTROL_TASK_QUEUE,
      workflowsPath: require.resolve('../../workflows'),
    });
    this.workflowWorkerDone = this.workflowWorker.run();
  }

  spawnTrainer(env: Record<string, string> = {}, args: string[] = []): TrainerProcess {
    // `node --import tsx`, not the tsx CLI: the CLI runs the script in a child process, which a SIGKILL
    // of the wrapper would leave running.
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'workers/trainer-worker.ts',
        '--backend',
        'tensorflow',
        '--no-workflows',
        '--shutdown-grace',
        '10',
        ...args,
      ],
      {
        cwd: REPO,
        env: { ...process.env, TEMPORAL_ADDRESS: this.server.address, TF_CPP_MIN_LOG_LEVEL: '2', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const t = new TrainerProcess(child);
    this.trainers.push(t);
    return t;
  }

  input(
    runId: string,
    storeUri: string,
    dataset: string,
    config: RunConfig,
    checkpointEvery: number,
  ): TrainingRunInput {
    return {
      runId,
      storeUri,
      dataset,
      config,
      schedule: {
        checkpointEvery,
        sampleEvery: config.train.totalSteps,
        sampleCount: 4,
        sampleSteps: 5,
        keepCheckpoints: 10,
      },
      timeouts: { heartbeatSeconds: 5, segmentHours: 1 },
      backend: 'tensorflow',
    };
  }

  async startRun(input: TrainingRunInput): Promise<WorkflowHandleWithFirstExecutionRunId> {
    return this.client.workflow.start(WORKFLOW_TYPE, {
      workflowId: input.runId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [input],
    });
  }

  async status(handle: WorkflowHandle): Promise<RunStatus> {
    return handle.query(statusQuery);
  }

  /** A data-parallel coordinator as a real process on an ephemeral loopback port; stopped with the rest. */
  async spawnCoordinator(key: string): Promise<string> {
    const c = await startCoordinatorProcess(key);
    this.trainers.push(new TrainerProcess(c.child));
    return c.address;
  }

  /** The running segment's last heartbeat, if any. */
  async heartbeat(handle: WorkflowHandle): Promise<SegmentHeartbeat | null> {
    const d = await handle.describe();
    const pending = d.raw.pendingActivities ?? [];
    const payload = pending[0]?.heartbeatDetails?.payloads?.[0];
    if (!payload?.data) return null;
    return JSON.parse(Buffer.from(payload.data).toString('utf8')) as SegmentHeartbeat;
  }

  async waitFor<T>(
    what: string,
    probe: () => Promise<T | null | undefined | false>,
    timeoutMs = 120_000,
  ): Promise<T> {
    const started = Date.now();
    for (;;) {
      try {
        const v = await probe();
        if (v) return v;
      } catch {
        // The server may be restarting; keep probing until the deadline.
      }
      if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
      await sleep(150);
    }
  }

  async finalParams(storeUri: string, runId: string, step: number): Promise<Float32Array> {
    const repo = new CheckpointRepository(openStore(storeUri), runId);
    return (await repo.load(step)).state.params;
  }

  async stop(): Promise<void> {
    await Promise.all(this.trainers.map((t) => (t.child.exitCode === null ? t.kill('SIGKILL') : null)));
    this.workflowWorker?.shutdown();
    await this.workflowWorkerDone?.catch(() => undefined);
    await this.workflowConnection?.close();
    await this.client?.connection.close();
    await this.server?.dispose();
    rmSync(this.workdir, { recursive: true, force: true });
  }
}
