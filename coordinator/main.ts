/**
 * The coordinator service: one per cluster, reachable by every trainer.
 *
 *   DDPM_COORDINATOR_KEY=... npm run coordinator -- [--host 127.0.0.1] [--port 7077]
 *   npm run coordinator -- --key-file /etc/ddpm/coordinator.key
 *
 * Prints `READY <host>:<port>` on stdout once listening; logs go to stderr.
 */
import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { runCli, UsageError } from '../common/errors';
import { formatAddress } from './protocol';
import { CoordinatorServer } from './server';

function port(value: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError(`expected a port number (0-65535), got '${value}'`);
  return n;
}

const program = new Command('coordinator')
  .description('Rendezvous and liveness service for data-parallel DDPM training')
  .option('--host <host>', 'interface to listen on (loopback unless configured otherwise)', '127.0.0.1')
  .option('--port <port>', 'TCP port (0 picks a free one)', port, 7077)
  .option('--key-file <path>', 'file holding the cluster key (default: $DDPM_COORDINATOR_KEY)');

interface Options {
  host: string;
  port: number;
  keyFile?: string;
}

function clusterKey(o: Options): string {
  if (o.keyFile) {
    let key: string;
    try {
      key = readFileSync(o.keyFile, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read the key file ${o.keyFile}: ${(err as NodeJS.ErrnoException).code}`);
    }
    if (!key) throw new UsageError(`the key file ${o.keyFile} is empty`);
    return key;
  }
  const key = process.env.DDPM_COORDINATOR_KEY?.trim();
  if (!key) throw new UsageError('no cluster key: set DDPM_COORDINATOR_KEY or pass --key-file');
  return key;
}

runCli(async () => {
  const o = program.parse().opts<Options>();
  let key: string;
  try {
    key = clusterKey(o);
  } catch (err) {
    // Exit 2, like commander's usage errors: nothing started, the invocation is wrong.
    process.stderr.write(`error: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = (line: string) => process.stderr.write(`[coordinator] ${line}\n`);
  // Handlers first: whoever reads READY may signal us at once.
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  const server = new CoordinatorServer({ clusterKey: key, host: o.host, port: o.port, log });
  const { host, port: bound } = await server.listen();
  log(`listening on ${formatAddress(host, bound)}`);
  process.stdout.write(`READY ${formatAddress(host, bound)}\n`);
  log(`${await stopped}: closing`);
  await server.close();
});
