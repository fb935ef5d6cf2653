import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import type { SearchAttributeType } from '@temporalio/common';
import { resolveTool } from './binaries';
import { ManagedProcess } from './managed-process';
import { findFreePort, portIsFree } from './ports';
import {
  CLI_TYPE_NAMES,
  DDPM_SEARCH_ATTRIBUTES,
  INDEXED_VALUE_TYPES,
  type SearchAttributeSpec,
} from './search-attributes';
import { waitUntil } from './wait';

export interface TemporalDevServerOptions {
  /** SQLite file that keeps workflows across restarts; default: a fresh temp file removed by dispose(). */
  dbFile?: string;
  /** Frontend gRPC port; default: a free one. Kept across restarts so clients can reconnect. */
  port?: number;
  /** Web UI port; default: a free one. Ignored when headless. */
  uiPort?: number;
  /** No Web UI (lighter, for tests). Default false. */
  headless?: boolean;
  /** Address the frontend binds; default 127.0.0.1. */
  ip?: string;
  namespace?: string;
  /** Custom search attributes to register; default: the project's (DDPM_SEARCH_ATTRIBUTES). */
  searchAttributes?: SearchAttributeSpec;
  logLevel?: 'debug' | 'info' | 'warn' | 'error' | 'never';
  /** Append the server's output here (it is also kept in memory for error messages). */
  logFile?: string;
  readyTimeoutMs?: number;
  /** The `temporal` executable; default: PATH, then .cache/bin. */
  binary?: string;
}

const PORT_ATTEMPTS = 3;
/**
 * A graceful stop gets this long before the server is killed. On a loaded machine it has taken over 10 s,
 * and a server killed mid-shutdown leaves stale cluster membership in its database: the next start then
 * waits out the membership join timeout (30 s) before it answers.
 */
const GRACEFUL_STOP_TIMEOUT_MS = 30_000;
/** How long a restart waits for its ports to be released before it reports who holds them. */
const PORT_RELEASE_TIMEOUT_MS = 30_000;

/**
 * A Temporal dev server (`temporal server start-dev`) on SQLite: start, wait until the frontend
 * answers, register the custom search attributes, stop, and restart on the same file and ports.
 */
export class TemporalDevServer {
  readonly dbFile: string;
  readonly namespace: string;
  readonly ip: string;
  private readonly binary: string;
  private readonly ownedDir: string | undefined;
  private portValue: number | undefined;
  private uiPortValue: number | undefined;
  private process: ManagedProcess | undefined;

  private constructor(private readonly options: TemporalDevServerOptions) {
    this.binary = options.binary ?? resolveTool('temporal');
    this.namespace = options.namespace ?? 'default';
    this.ip = options.ip ?? '127.0.0.1';
    if (options.dbFile) {
      this.dbFile = path.resolve(options.dbFile);
    } else {
      this.ownedDir = mkdtempSync(path.join(os.tmpdir(), 'ddpm-temporal-'));
      this.dbFile = path.join(this.ownedDir, 'temporal.db');
    }
    this.portValue = options.port;
    this.uiPortValue = options.headless ? undefined : options.uiPort;
  }

  /** Starts a server and resolves once it accepts requests with its search attributes registered. */
  static async start(options: TemporalDevServerOptions = {}): Promise<TemporalDevServer> {
    const server = new TemporalDevServer(options);
    try {
      await server.start();
    } catch (err) {
      await server.dispose(); // the caller never gets the object, so it could not clean up
      throw err;
    }
    return server;
  }

  get port(): number {
    if (this.portValue === undefined)
      throw new Error('temporal dev server has not been started: call start()');
    return this.portValue;
  }

  /** host:port for Connection.connect / NativeConnection.connect / TEMPORAL_ADDRESS. */
  get address(): string {
    return `${this.ip}:${this.port}`;
  }

  get uiUrl(): string | undefined {
    return this.uiPortValue === undefined ? undefined : `http://${this.ip}:${this.uiPortValue}`;
  }

  /** The id of the server's process group (its watchdog shell and the server), while started. */
  get processGroup(): number | undefined {
    return this.running ? this.process?.pid : undefined;
  }

  get running(): boolean {
    return this.process !== undefined && this.process.exit === undefined;
  }

  /** Starts (or starts again, on the same db file and ports) and waits until ready. */
  async start(): Promise<void> {
    if (this.running) return;
    const choosePorts = this.portValue === undefined;
    // A restart keeps its ports (clients reconnect by themselves): wait until nothing holds them.
    if (!choosePorts) await this.portsReleased();
    for (let attempt = 1; ; attempt++) {
      if (choosePorts) {
        this.portValue = await findFreePort(this.ip);
        if (!this.options.headless) this.uiPortValue = this.options.uiPort ?? (await findFreePort(this.ip));
      }
      this.process = ManagedProcess.start({
        name: 'temporal dev server',
        command: this.binary,
        args: this.cliArgs(),
        logFile: this.options.logFile,
      });
      try {
        await this.waitUntilReady();
        break;
      } catch (err) {
        await this.process.stop({ force: true });
        // A free port can be taken between asking and binding; only then is a second try useful.
        const portRace = /address already in use|can't set .*port/i.test(this.process.output());
        if (!(choosePorts && portRace && attempt < PORT_ATTEMPTS)) throw err;
      }
    }
    await this.ensureSearchAttributes();
  }

  /**
   * Stops the server (gracefully unless `force`, which simulates a crash); the db file stays. Resolves
   * once the server process has exited, so its port and database are free.
   */
  async stop(opts: { force?: boolean } = {}): Promise<void> {
    await this.process?.stop({ ...opts, timeoutMs: GRACEFUL_STOP_TIMEOUT_MS });
  }

  async restart(opts: { force?: boolean } = {}): Promise<void> {
    await this.stop(opts);
    await this.start();
  }

  /** Stops the server and deletes the temp db this object created (never a caller's dbFile). */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownedDir) rmSync(this.ownedDir, { recursive: true, force: true });
  }

  /** The server's recent output, for diagnosing failures. */
  output(): string {
    return this.process?.output() ?? '';
  }

  private get searchAttributes(): SearchAttributeSpec {
    return this.options.searchAttributes ?? DDPM_SEARCH_ATTRIBUTES;
  }

  private cliArgs(): string[] {
    const args = [
      'server',
      'start-dev',
      '--db-filename',
      this.dbFile,
      '--ip',
      this.ip,
      '--port',
      String(this.port),
    ];
    args.push('--log-level', this.options.logLevel ?? 'warn');
    if (this.options.headless) args.push('--headless');
    else args.push('--ui-port', String(this.uiPortValue));
    if (this.namespace !== 'default') args.push('--namespace', this.namespace);
    for (const [name, type] of Object.entries(this.searchAttributes)) {
      args.push('--search-attribute', `${name}=${CLI_TYPE_NAMES[type]}`);
    }
    return args;
  }

  private async portsReleased(): Promise<void> {
    const ports = [this.port, ...(this.uiPortValue === undefined ? [] : [this.uiPortValue])];
    for (const port of ports) {
      await waitUntil(`temporal dev server: port ${port} on ${this.ip}`, () => portIsFree(this.ip, port), {
        timeoutMs: PORT_RELEASE_TIMEOUT_MS,
        intervalMs: 100,
      }).catch(() => {
        throw new Error(
          `temporal dev server: port ${port} on ${this.ip} is still in use after ${PORT_RELEASE_TIMEOUT_MS / 1000} s; ` +
            'another process holds it (the server keeps its ports across restarts)',
        );
      });
    }
  }

  private async waitUntilReady(): Promise<void> {
    await waitUntil(
      `temporal dev server on ${this.address}`,
      () =>
        this.withConnection(async (connection) => {
          await connection.workflowService.describeNamespace({ namespace: this.namespace });
          return true;
        }),
      {
        timeoutMs: this.options.readyTimeoutMs ?? 60_000,
        intervalMs: 250,
        giveUp: () => this.process?.exitReason(),
      },
    );
  }

  /**
   * start-dev registers its --search-attribute flags only when it creates the namespace, so a db file
   * from an older setup may lack some: add what is missing, and refuse a clash of types.
   */
  private async ensureSearchAttributes(): Promise<void> {
    const wanted = Object.entries(this.searchAttributes);
    if (wanted.length === 0) return;
    await this.withConnection(async (connection) => {
      const { customAttributes } = await connection.operatorService.listSearchAttributes({
        namespace: this.namespace,
      });
      const existing = customAttributes ?? {};
      const missing: Record<string, number> = {};
      for (const [name, type] of wanted) {
        const have = existing[name];
        if (have === undefined || have === null) missing[name] = INDEXED_VALUE_TYPES[type];
        else if (have !== INDEXED_VALUE_TYPES[type]) throw searchAttributeClash(name, type, this.dbFile);
      }
      if (Object.keys(missing).length > 0) {
        await connection.operatorService.addSearchAttributes({
          namespace: this.namespace,
          searchAttributes: missing,
        });
      }
    });
  }

  private async withConnection<T>(use: (connection: Connection) => Promise<T>): Promise<T> {
    const connection = await Connection.connect({ address: this.address, connectTimeout: 2_000 });
    try {
      return await use(connection);
    } finally {
      await connection.close();
    }
  }
}

function searchAttributeClash(name: string, type: SearchAttributeType, dbFile: string): Error {
  return new Error(
    `search attribute ${name} exists in ${dbFile} with a type other than ${type}: use a fresh --db-filename`,
  );
}
