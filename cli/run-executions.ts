import {
  Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowExecutionDescription,
  WorkflowNotFoundError,
  defaultPayloadConverter,
} from '@temporalio/client';
import { CheckpointRepository } from '../core/checkpoint/repository';
import { isSampleGridKey, runKeys } from '../core/store-layout';
import { openStore } from '../store';
import {
  CONTROL_TASK_QUEUE,
  CarriedState,
  SEARCH_ATTRIBUTES,
  TrainingRunInput,
  WORKFLOW_TYPE,
} from '../workflows/api';
import type { trainingRun } from '../workflows/training-run';
import { parseRunInput } from './run-input';

/** The newest execution of a run (workflow ID = run ID), or null when there is none. */
export async function describeRun(
  client: Client,
  runId: string,
): Promise<WorkflowExecutionDescription | null> {
  try {
    return await client.workflow.getHandle(runId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

export async function requireRun(
  client: Client,
  runId: string,
  namespace: string,
): Promise<WorkflowExecutionDescription> {
  const d = await describeRun(client, runId);
  if (!d) throw new Error(`no run with ID '${runId}' in namespace ${namespace}`);
  return d;
}

/** RUNNING, COMPLETED, FAILED, ... in lower case, for messages. */
export function stateName(d: WorkflowExecutionDescription): string {
  return d.status.name.toLowerCase();
}

/**
 * Starts an execution of the run. The ID may be reused once earlier executions have closed (a failed or
 * cancelled run starts again and resumes from its store); a racing start of the same run reports
 * 'already-running' instead of failing.
 */
export async function startRunExecution(
  client: Client,
  input: TrainingRunInput,
): Promise<'started' | 'already-running'> {
  try {
    await client.workflow.start<typeof trainingRun>(WORKFLOW_TYPE, {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: input.runId,
      args: [input],
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      typedSearchAttributes: [
        { key: SEARCH_ATTRIBUTES.preset, value: input.config.preset },
        { key: SEARCH_ATTRIBUTES.status, value: 'preparing' },
        { key: SEARCH_ATTRIBUTES.step, value: input.carried?.step ?? 0 },
      ],
      memo: { store: input.storeUri, dataset: input.dataset, preset: input.config.preset },
    });
    return 'started';
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return 'already-running';
    throw err;
  }
}

/** The input the run's newest execution started with (its WorkflowExecutionStarted event). */
export async function lastRunInput(client: Client, runId: string): Promise<TrainingRunInput> {
  const history = await client.workflow.getHandle(runId).fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload) throw new Error(`run '${runId}': its history has no start input`);
  return parseRunInput(defaultPayloadConverter.fromPayload(payload));
}

/**
 * What a new execution of an existing run carries over, read from its store: the prepared dataset and the
 * newest checkpoint. The workflow counts segments from the step it is given, so a restart that started
 * from step 0 would ask the trainer for a segment ending before the checkpoint it resumes from.
 * Without a readable store the input's own carried state (if any) stands.
 */
export async function withStoreResumePoint(
  input: TrainingRunInput,
  log: (line: string) => void,
): Promise<TrainingRunInput> {
  let carried: CarriedState | undefined = input.carried;
  try {
    const store = openStore(input.storeUri);
    const datasetKey = runKeys.datasetManifest(input.runId);
    const repo = new CheckpointRepository(store, input.runId);
    const [step] = await repo.listSteps();
    if (step !== undefined && (await store.exists(datasetKey))) {
      const samples = (await store.list(runKeys.samplesPrefix(input.runId)))
        .filter((k) => isSampleGridKey(input.runId, k))
        .sort();
      carried = {
        datasetKey,
        step,
        loss: carried?.step === step ? carried.loss : null,
        lastCheckpointKey: repo.keyFor(step),
        lastSampleKey: samples.at(-1) ?? null,
        startedAt: carried?.startedAt ?? new Date().toISOString(),
      };
      log(`resuming from ${store.uri}/${repo.keyFor(step)} (step ${step})`);
    }
  } catch (err) {
    log(`warning: could not read the run's store (${err instanceof Error ? err.message : String(err)})`);
  }
  return { ...input, carried };
}
