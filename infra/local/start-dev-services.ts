/**
 * Starts a local Temporal dev server (with Web UI) and an S3-compatible gateway for development, keeps
 * their state under one directory across restarts, and stops both on Ctrl-C.
 *
 *   npx tsx infra/local/start-dev-services.ts [--no-s3] [--data-dir <dir>]   (default <repo>/.cache/dev-services)
 *
 * The S3 credentials are written to <data-dir>/s3.env (mode 600) rather than printed: `source` it in the
 * shell that runs the CLI or workers.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { TemporalDevServer } from './temporal-dev-server';
import { VersityGw } from './versitygw';

interface Options {
  dataDir: string;
  temporalPort: number;
  uiPort: number;
  headless?: boolean;
  s3: boolean;
  s3Port: number;
  bucket: string;
}

const port = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`invalid port ${value}: expected 1-65535`);
  return n;
};

const program = new Command('start-dev-services')
  .description('Run a Temporal dev server and versitygw (S3) locally until Ctrl-C.')
  .option(
    '--data-dir <dir>',
    'where the Temporal db, the buckets and s3.env live',
    path.resolve(__dirname, '..', '..', '.cache', 'dev-services'),
  )
  .option('--temporal-port <n>', 'Temporal frontend gRPC port', port, 7233)
  .option('--ui-port <n>', 'Temporal Web UI port', port, 8233)
  .option('--headless', 'no Temporal Web UI')
  .option('--no-s3', 'do not start versitygw (use a local directory store instead)')
  .option('--s3-port <n>', 'versitygw port', port, 7070)
  .option('--bucket <name>', 'bucket to create', 'ddpm');

/** Keeps the same root credentials across restarts, so an already sourced s3.env stays valid. */
function loadOrCreateCredentials(envFile: string): { accessKeyId: string; secretAccessKey: string } {
  if (existsSync(envFile)) {
    const values = Object.fromEntries(
      readFileSync(envFile, 'utf8')
        .split('\n')
        .map((line) => /^export (\w+)=(.*)$/.exec(line))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1], m[2]]),
    );
    if (values.AWS_ACCESS_KEY_ID && values.AWS_SECRET_ACCESS_KEY) {
      return { accessKeyId: values.AWS_ACCESS_KEY_ID, secretAccessKey: values.AWS_SECRET_ACCESS_KEY };
    }
  }
  return {
    accessKeyId: `dev${randomBytes(8).toString('hex')}`,
    secretAccessKey: randomBytes(24).toString('base64url'),
  };
}

async function main(): Promise<void> {
  const o = program.parse().opts<Options>();
  const dataDir = path.resolve(o.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const log = (line: string) => process.stderr.write(`${line}\n`);

  const temporal = await TemporalDevServer.start({
    dbFile: path.join(dataDir, 'temporal.db'),
    port: o.temporalPort,
    uiPort: o.uiPort,
    headless: o.headless,
    logFile: path.join(dataDir, 'temporal.log'),
  });
  log(
    `temporal: ${temporal.address}${temporal.uiUrl ? `, UI ${temporal.uiUrl}` : ''} (db ${temporal.dbFile})`,
  );

  let gateway: VersityGw | undefined;
  if (o.s3) {
    const envFile = path.join(dataDir, 's3.env');
    gateway = await VersityGw.start({
      dataDir: path.join(dataDir, 's3'),
      port: o.s3Port,
      ...loadOrCreateCredentials(envFile),
      buckets: [o.bucket],
      logFile: path.join(dataDir, 'versitygw.log'),
    });
    const lines = Object.entries(gateway.s3Env()).map(([name, value]) => `export ${name}=${value}`);
    writeFileSync(envFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    log(`s3: ${gateway.endpoint}, bucket s3://${o.bucket} (credentials: source ${envFile})`);
  }
  log('Ctrl-C stops both; state stays in the data dir for the next start.');

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    log('stopping...');
    await Promise.all([temporal.stop(), gateway?.stop()]);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((err: unknown) => {
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
