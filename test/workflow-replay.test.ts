/**
 * Replays the recorded histories of real runs (test/fixtures/histories, made by `npm run
 * record-histories`) against today's workflow code. A change to workflows/ that would break a run in
 * flight (a different command sequence for the same history) fails here, not in a week-long run after an
 * upgrade. How to change the workflow safely: docs/workflow-versioning.md.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DefaultLogger, Runtime, Worker, bundleWorkflowCode } from '@temporalio/worker';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { HistoryFixture } from './record-histories';

jest.setTimeout(240_000);

const DIR = join(__dirname, 'fixtures', 'histories');
const files = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort();
/** A recorded fixture, or a raw history exported from a deployment (`temporal workflow show --output json`). */
const fixtures = files.map((file) => {
  const parsed = JSON.parse(readFileSync(join(DIR, file), 'utf8')) as Partial<HistoryFixture> & {
    events?: unknown[];
  };
  return parsed.events
    ? { file, scenario: undefined, workflowId: file.replace(/\.json$/, ''), history: parsed }
    : { file, scenario: parsed.scenario, workflowId: parsed.workflowId as string, history: parsed.history };
});

let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  bundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('../workflows'),
    logger: new DefaultLogger('WARN'),
  });
});

async function replayAll(workflowBundle: WorkflowBundleWithSourceMap) {
  const results: { file: string; error?: Error }[] = [];
  const replay = Worker.runReplayHistories(
    { workflowBundle, replayName: 'workflow-replay-test' },
    fixtures.map((f) => ({ workflowId: f.workflowId, history: f.history })),
  );
  let i = 0;
  for await (const r of replay) results.push({ file: fixtures[i++].file, error: r.error });
  return results;
}

test('the fixtures cover every recorded scenario', () => {
  const scenarios = new Set(fixtures.flatMap((f) => (f.scenario ? [f.scenario] : [])));
  expect([...scenarios]).toEqual(
    expect.arrayContaining([
      'cancel',
      'continue-as-new',
      'data-parallel-lost-worker',
      'in-run-evaluation',
      'pause-resume',
      'single-worker',
    ]),
  );
  // The continue-as-new run was recorded as its chain of executions.
  expect(fixtures.filter((f) => f.scenario === 'continue-as-new').length).toBeGreaterThanOrEqual(2);
});

/** The IDs of the patches (wf.patched) whose markers a history recorded. */
function patchIds(history: unknown): string[] {
  const events = (history as { events: { markerRecordedEventAttributes?: MarkerAttributes }[] }).events;
  return events.flatMap((e) => {
    const marker = e.markerRecordedEventAttributes;
    const data =
      marker?.markerName === 'core_patch' ? marker.details?.['patch-data']?.payloads?.[0]?.data : null;
    return data ? [(JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { id: string }).id] : [];
  });
}
type MarkerAttributes = { markerName?: string; details?: Record<string, { payloads?: { data?: string }[] }> };

test('both sides of each patch are replayed: a pause and a cancel recorded before it and after it', () => {
  for (const scenario of ['pause-resume', 'cancel']) {
    const recorded = fixtures.filter((f) => f.scenario === scenario);
    const marked = recorded.filter((f) => patchIds(f.history).includes('stopped-step-from-cancellation'));
    expect({ scenario, before: recorded.length - marked.length, after: marked.length }).toEqual({
      scenario,
      before: 1,
      after: 1,
    });
  }
});

test('the failure budget is replayed from a run that spent it (its patch marker recorded)', () => {
  const spent = fixtures.filter((f) => f.scenario === 'failure-budget');
  expect(spent.length).toBe(1);
  expect(patchIds(spent[0].history)).toContain('failure-budget');
});

test('in-run evaluation is replayed from a run that evaluated (its patch marker and activities recorded)', () => {
  const evaluated = fixtures.filter((f) => f.scenario === 'in-run-evaluation');
  expect(evaluated.length).toBe(1);
  expect(patchIds(evaluated[0].history)).toContain('in-run-evaluation');
  const events = (evaluated[0].history as { events: ActivityScheduled[] }).events;
  const evaluations = events.filter(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'evaluate',
  );
  expect(evaluations.length).toBe(2);
  // Histories recorded before the patch never scheduled one: they replay down the old path.
  const older = fixtures.filter((f) => !patchIds(f.history).includes('in-run-evaluation'));
  expect(older.length).toBeGreaterThan(0);
});
type ActivityScheduled = { activityTaskScheduledEventAttributes?: { activityType?: { name?: string } } };

test('every recorded history replays on the current workflow code without nondeterminism', async () => {
  const results = await replayAll(bundle);
  expect(results.map((r) => r.file)).toEqual(files);
  const failures = results.filter((r) => r.error).map((r) => `${r.file}: ${r.error?.message}`);
  expect(failures).toEqual([]);
});

test('the replayer does catch a workflow that changed incompatibly', async () => {
  // A workflow that schedules its first activity on another queue and skips the dataset step: the
  // replay of any recorded run must report the mismatch (proof that the test above can fail).
  const changed = await bundleWorkflowCode({
    workflowsPath: require.resolve('./fixtures/incompatible-workflow'),
    logger: new DefaultLogger('WARN'),
  });
  const results = await replayAll(changed);
  expect(results.length).toBe(files.length);
  for (const r of results) {
    expect(r.error?.name).toBe('DeterminismViolationError');
  }
});
