/**
 * A process that holds a ring listener open the way a trainer waiting for its group does, for tests
 * that attack it from outside. Prints `READY <port>`, then answers lines on stdin:
 *   `stats`         -> one JSON line: its RSS and what the listener holds for unproven connections
 *   `expect <token>` -> waits for rank 1's proven connection to rank 0 and prints `ACCEPTED` (or `FAILED ...`)
 */
import { createInterface } from 'node:readline';
import { RingListener } from '../../coordinator/ring-listener';

async function main(): Promise<void> {
  const listener = await RingListener.open('127.0.0.1');
  const say = (line: string) => process.stdout.write(`${line}\n`);
  say(`READY ${listener.address.split(':').pop()}`);
  for await (const line of createInterface({ input: process.stdin })) {
    const [command, arg] = line.trim().split(' ');
    if (command === 'stats') {
      global.gc?.();
      say(JSON.stringify({ rssBytes: process.memoryUsage().rss, ...listener.unproven() }));
    } else if (command === 'expect') {
      listener.expect(arg, 1, 0, 10_000, 1).then(
        (socket) => {
          say('ACCEPTED');
          socket.destroy();
        },
        (err: Error) => say(`FAILED ${err.message}`),
      );
    }
  }
  listener.close();
}

void main();
