import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { readFileSync } from 'node:fs';
import {
  DDPM_SEARCH_ATTRIBUTES,
  findFreePort,
  ManagedProcess,
  MissingToolError,
  resolveTool,
  TemporalDevServer,
} from '../infra/local';
import { groupMembers } from '../infra/local/daemon';
import { crashSummary } from '../infra/local/managed-process';
import { portIsFree } from '../infra/local/ports';
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

  test('stop resolves only once the server process is gone, so a restart finds its port and database free', async () => {
    // Killed, the watchdog shell can be reaped while the server (a large Go process) is still being torn
    // down; a restart that started then found the port taken (seen on a loaded machine, 3 of 15 kills).
    const crashy = await TemporalDevServer.start({ dbFile: path.join(scratch, 'crashy.db'), headless: true });
    try {
      for (let i = 0; i < 8; i++) {
        const group = crashy.processGroup as number;
        await crashy.stop({ force: i % 2 === 0 });
        expect(groupMembers(group)).toEqual([]);
        expect(await portIsFree(crashy.ip, crashy.port)).toBe(true);
        await crashy.start();
      }
    } finally {
      await crashy.dispose();
    }
  }, 240_000);
});

describe('crash reports of managed processes', () => {
  test('a Go crash is reported by its first line, not the last line of its stack dump', async () => {
    const port = await findFreePort();
    const proc = ManagedProcess.start({
      name: 'temporal dev server',
      command: resolveTool('temporal'),
      args: [
        'server',
        'start-dev',
        '--headless',
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--log-level',
        'never',
      ],
    });
    try {
      const server = await waitForServerPid(proc.pid as number);
      process.kill(server, 'SIGQUIT'); // Go's runtime dumps every goroutine and exits with code 2
      await proc.waitForExit();
      expect(proc.exitReason()).toBe('temporal dev server exited with code 2: SIGQUIT: quit');
      expect(proc.output().trim().split('\n').pop()).not.toMatch(/SIGQUIT/); // what used to be shown
    } finally {
      await proc.stop({ force: true });
    }
  }, 90_000);

  test('a Go panic is summarised by its message and the function that panicked', () => {
    // The layout Go prints for an unrecovered panic (message, blank line, the goroutine's stack).
    const report = [
      'panic: failed assigning ephemeral port: failed to assign a free port: dial tcp 127.0.0.1:41234: connect: cannot assign requested address',
      '',
      'goroutine 1 [running]:',
      'github.com/temporalio/cli/temporalcli/devserver.MustGetFreePort(...)',
      '\t/go/pkg/mod/github.com/temporalio/cli@v1.5.1/temporalcli/devserver/freeport.go:89',
      'main.main()',
      '\t/go/pkg/mod/github.com/temporalio/cli@v1.5.1/cmd/temporal/main.go:18 +0x96',
    ].join('\n');
    expect(crashSummary(report)).toBe(
      'panic: failed assigning ephemeral port: failed to assign a free port: dial tcp 127.0.0.1:41234: ' +
        'connect: cannot assign requested address (in github.com/temporalio/cli/temporalcli/devserver.MustGetFreePort)',
    );
  });
});

/** The temporal process under a ManagedProcess's watchdog shell, once it has started. */
async function waitForServerPid(group: number): Promise<number> {
  for (let i = 0; i < 300; i++) {
    const server = groupMembers(group).find((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'temporal';
      } catch {
        return false;
      }
    });
    // Give the Go runtime a moment past exec before signalling it.
    if (server !== undefined) return new Promise((r) => setTimeout(() => r(server), 1000));
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no temporal process in group ${group}`);
}
