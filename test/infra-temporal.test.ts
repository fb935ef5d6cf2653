import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { DDPM_SEARCH_ATTRIBUTES, MissingToolError, resolveTool, TemporalDevServer } from '../infra/local';
import { finishSignal, waitForFinish } from './fixtures/infra-workflows';

/**
 * A real Temporal dev server on a SQLite file: the project's search attributes are registered, and a
 * workflow started before a restart is still there afterwards and runs to completion on a real worker.
 */

const INDEXED_VALUE_TYPE = { KEYWORD: 2, INT: 3, DOUBLE: 4 } as const;
const presetKey = defineSearchAttributeKey('DdpmPreset', SearchAttributeType.KEYWORD);
const stepKey = defineSearchAttributeKey('DdpmStep', SearchAttributeType.INT);

describe('Temporal dev server (infra/local)', () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'ddpm-infra-temporal-'));
  const dbFile = path.join(scratch, 'temporal.db');
  let server: TemporalDevServer;
  let connection: Connection;
  let client: Client;

  beforeAll(async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') }); // the worker's INFO lines drown the test report
    server = await TemporalDevServer.start({ dbFile, headless: true });
    connection = await Connection.connect({ address: server.address });
    client = new Client({ connection });
  }, 90_000);

  afterAll(async () => {
    await connection?.close();
    await server?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('a missing binary fails with what to run', () => {
    expect(() => resolveTool('temporal', '', path.join(scratch, 'empty-bin'))).toThrow(MissingToolError);
    expect(() => resolveTool('temporal', '', path.join(scratch, 'empty-bin'))).toThrow(
      /temporal not found on PATH or in .*: run infra\/install-tools\.sh/,
    );
  });

  test('the project search attributes are registered with their types', async () => {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({
      namespace: 'default',
    });
    expect(Object.keys(DDPM_SEARCH_ATTRIBUTES).sort()).toEqual([
      'DdpmBitsPerDim',
      'DdpmClassifierFid',
      'DdpmLoss',
      'DdpmPreset',
      'DdpmStatus',
      'DdpmStep',
    ]);
    expect(customAttributes).toMatchObject({
      DdpmPreset: INDEXED_VALUE_TYPE.KEYWORD,
      DdpmStep: INDEXED_VALUE_TYPE.INT,
      DdpmLoss: INDEXED_VALUE_TYPE.DOUBLE,
      DdpmStatus: INDEXED_VALUE_TYPE.KEYWORD,
      DdpmBitsPerDim: INDEXED_VALUE_TYPE.DOUBLE,
      DdpmClassifierFid: INDEXED_VALUE_TYPE.DOUBLE,
    });
  });

  test('attributes missing from an existing db file are added at start (start-dev only registers on create)', async () => {
    const olderDb = path.join(scratch, 'older.db');
    const bare = await TemporalDevServer.start({ dbFile: olderDb, headless: true, searchAttributes: {} });
    await bare.stop();
    const upgraded = await TemporalDevServer.start({ dbFile: olderDb, headless: true });
    const check = await Connection.connect({ address: upgraded.address });
    try {
      const { customAttributes } = await check.operatorService.listSearchAttributes({ namespace: 'default' });
      expect(Object.keys(customAttributes ?? {})).toEqual(
        expect.arrayContaining(Object.keys(DDPM_SEARCH_ATTRIBUTES)),
      );
    } finally {
      await check.close();
      await upgraded.dispose();
    }
  }, 90_000);

  test('a workflow started before a restart survives it and completes on a real worker', async () => {
    const taskQueue = `infra-test-${Date.now()}`;
    const workflowId = `survives-restart-${Date.now()}`;
    const handle = await client.workflow.start(waitForFinish, {
      taskQueue,
      workflowId,
      typedSearchAttributes: [
        { key: presetKey, value: 'infra-test' },
        { key: stepKey, value: 42 },
      ],
    });
    const addressBefore = server.address;

    await server.restart();
    expect(server.address).toBe(addressBefore); // same port, so existing clients reconnect by themselves

    const description = await handle.describe();
    expect(description.status.name).toBe('RUNNING');
    expect(description.typedSearchAttributes.get(presetKey)).toBe('infra-test');
    expect(description.typedSearchAttributes.get(stepKey)).toBe(42);

    // Visibility answers queries on the custom attributes (what the UI's filters use).
    // Visibility is written asynchronously, so give it a moment.
    const query = `DdpmPreset = "infra-test" AND DdpmStep = 42`;
    let found: string[] = [];
    for (let attempt = 0; attempt < 50 && !found.includes(workflowId); attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 200));
      found = [];
      for await (const execution of client.workflow.list({ query })) found.push(execution.workflowId);
    }
    expect(found).toContain(workflowId);

    const workerConnection = await NativeConnection.connect({ address: server.address });
    try {
      const worker = await Worker.create({
        connection: workerConnection,
        taskQueue,
        workflowsPath: require.resolve('./fixtures/infra-workflows'),
      });
      const result = await worker.runUntil(async () => {
        await handle.signal(finishSignal, 'after restart');
        return handle.result();
      });
      expect(result).toBe('finished: after restart');
    } finally {
      await workerConnection.close();
    }
  }, 120_000);
});
