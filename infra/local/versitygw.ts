import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { resolveTool } from './binaries';
import { ManagedProcess } from './managed-process';
import { findFreePort } from './ports';
import { waitUntil } from './wait';

export interface VersityGwOptions {
  /** Holds the buckets (data/) and their metadata (meta/); default: a temp dir removed by dispose(). */
  dataDir?: string;
  /** Listen port on 127.0.0.1; default: a free one. Kept across restarts. */
  port?: number;
  /** Root credentials; default: ROOT_ACCESS_KEY_ID / ROOT_SECRET_ACCESS_KEY from the environment, else random. */
  accessKeyId?: string;
  secretAccessKey?: string;
  region?: string;
  /** Buckets to create once the gateway first answers. */
  buckets?: string[];
  logFile?: string;
  readyTimeoutMs?: number;
  /** The `versitygw` executable; default: PATH, then .cache/bin. */
  binary?: string;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

const HOST = '127.0.0.1';
const PORT_ATTEMPTS = 3;

/**
 * versitygw, an S3-compatible gateway, on its POSIX backend: start, wait until it answers signed
 * requests, create buckets, stop (gracefully or as a crash) and start again on the same data and port,
 * which is how tests simulate an S3 outage.
 */
export class VersityGw {
  readonly dataDir: string;
  readonly region: string;
  readonly #credentials: S3Credentials; // #private: never shown by console.log / util.inspect
  private readonly binary: string;
  private readonly ownedDir: string | undefined;
  private portValue: number | undefined;
  private process: ManagedProcess | undefined;

  private constructor(private readonly options: VersityGwOptions) {
    this.binary = options.binary ?? resolveTool('versitygw');
    this.region = options.region ?? 'us-east-1';
    this.#credentials = {
      accessKeyId:
        options.accessKeyId ?? process.env.ROOT_ACCESS_KEY_ID ?? `test${randomBytes(8).toString('hex')}`,
      secretAccessKey:
        options.secretAccessKey ??
        process.env.ROOT_SECRET_ACCESS_KEY ??
        randomBytes(24).toString('base64url'),
    };
    if (options.dataDir) {
      this.dataDir = path.resolve(options.dataDir);
    } else {
      this.ownedDir = mkdtempSync(path.join(os.tmpdir(), 'ddpm-versitygw-'));
      this.dataDir = this.ownedDir;
    }
    this.portValue = options.port;
  }

  /** Starts a gateway, waits until it is ready, and creates `options.buckets`. */
  static async start(options: VersityGwOptions = {}): Promise<VersityGw> {
    const gateway = new VersityGw(options);
    try {
      await gateway.start();
      for (const bucket of options.buckets ?? []) await gateway.createBucket(bucket);
    } catch (err) {
      await gateway.dispose(); // the caller never gets the object, so it could not clean up
      throw err;
    }
    return gateway;
  }

  get port(): number {
    if (this.portValue === undefined) throw new Error('versitygw has not been started: call start()');
    return this.portValue;
  }

  get endpoint(): string {
    return `http://${HOST}:${this.port}`;
  }

  get credentials(): S3Credentials {
    return { ...this.#credentials };
  }

  get running(): boolean {
    return this.process !== undefined && this.process.exit === undefined;
  }

  /**
   * The standard AWS variables that point an SDK (or a child process, e.g. a worker) at this gateway.
   * Contains the secret: pass it to child processes, never print it.
   */
  s3Env(): Record<string, string> {
    return {
      AWS_ENDPOINT_URL_S3: this.endpoint,
      AWS_REGION: this.region,
      AWS_ACCESS_KEY_ID: this.#credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: this.#credentials.secretAccessKey,
    };
  }

  /** Starts (or starts again, on the same data and port) and waits until it answers. */
  async start(): Promise<void> {
    if (this.running) return;
    const bucketsDir = path.join(this.dataDir, 'data');
    // Metadata in a sidecar dir instead of xattrs, which tmpfs and some container filesystems lack.
    const metaDir = path.join(this.dataDir, 'meta');
    mkdirSync(bucketsDir, { recursive: true });
    mkdirSync(metaDir, { recursive: true });
    const choosePort = this.portValue === undefined;
    for (let attempt = 1; ; attempt++) {
      if (choosePort) this.portValue = await findFreePort(HOST);
      this.process = ManagedProcess.start({
        name: 'versitygw',
        command: this.binary,
        args: [
          '--port',
          `${HOST}:${this.port}`,
          '--region',
          this.region,
          '--quiet',
          'posix',
          '--sidecar',
          metaDir,
          bucketsDir,
        ],
        // Secrets go through the environment: argv is visible to every user in `ps`.
        env: {
          ROOT_ACCESS_KEY_ID: this.#credentials.accessKeyId,
          ROOT_SECRET_ACCESS_KEY: this.#credentials.secretAccessKey,
        },
        logFile: this.options.logFile,
      });
      try {
        await this.waitUntilReady();
        return;
      } catch (err) {
        await this.process.stop({ force: true });
        const portRace = /address already in use/i.test(this.process.output());
        if (!(choosePort && portRace && attempt < PORT_ATTEMPTS)) throw err;
      }
    }
  }

  /** Stops the gateway (gracefully unless `force`, which simulates a crash); the data stays. */
  async stop(opts: { force?: boolean } = {}): Promise<void> {
    await this.process?.stop(opts);
  }

  async restart(opts: { force?: boolean } = {}): Promise<void> {
    await this.stop(opts);
    await this.start();
  }

  /** Stops the gateway and deletes the temp dir this object created (never a caller's dataDir). */
  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownedDir) rmSync(this.ownedDir, { recursive: true, force: true });
  }

  /** Creates a bucket; one that exists already is fine. */
  async createBucket(bucket: string): Promise<void> {
    await this.withClient(async (client) => {
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
      } catch (err) {
        if ((err as Error).name !== 'BucketAlreadyOwnedByYou') throw err;
      }
    });
  }

  output(): string {
    return this.process?.output() ?? '';
  }

  private async waitUntilReady(): Promise<void> {
    await waitUntil(
      `versitygw on ${this.endpoint}`,
      () =>
        this.withClient(async (client) => {
          await client.send(new ListBucketsCommand({}));
          return true;
        }),
      {
        timeoutMs: this.options.readyTimeoutMs ?? 30_000,
        intervalMs: 100,
        giveUp: () => this.process?.exitReason(),
      },
    );
  }

  private async withClient<T>(use: (client: S3Client) => Promise<T>): Promise<T> {
    const client = new S3Client({
      endpoint: this.endpoint,
      region: this.region,
      forcePathStyle: true,
      credentials: this.credentials,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    try {
      return await use(client);
    } finally {
      client.destroy();
    }
  }
}
