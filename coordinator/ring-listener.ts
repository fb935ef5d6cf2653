/**
 * The accepting end of a ring link. It listens before the member joins (the join message carries its
 * address), holds early connections until the group token is known, and hands over only a connection
 * whose first bytes prove, with that token, that it comes from the expected successor; anything else
 * is dropped.
 *
 * Anyone can connect to a listening port, so what an unproven connection costs is bounded: it may send
 * at most a proof's worth of bytes (the real connector sends nothing more before it is answered), and
 * at most MAX_UNPROVEN are held at once, the oldest dropped first, so a flood cannot lock out the peer.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { CoordinatorError } from './api';
import { RING_PROOF_BYTES, ringProof, ringProofValid } from './auth';
import { formatAddress } from './protocol';

const MAX_UNPROVEN = 64;
/** Connections that do not prove themselves within this are dropped. */
const PROOF_DEADLINE_MS = 10_000;

/** Accepts the successor's connection; opened before the join, whose message carries its address. */
export class RingListener {
  private readonly held = new Set<HeldConnection>();
  private expectation: {
    proof: Buffer;
    reply: Buffer;
    resolve: (s: Socket) => void;
    reject: (e: Error) => void;
  } | null = null;

  private constructor(
    private readonly server: Server,
    readonly address: string,
  ) {
    server.on('connection', (socket) => this.hold(socket));
  }

  static open(host: string): Promise<RingListener> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        server.on('error', () => {});
        const addr = server.address();
        if (addr === null || typeof addr === 'string') return reject(new Error('ring listener has no port'));
        resolve(new RingListener(server, formatAddress(host, addr.port)));
      });
    });
  }

  /** Resolves with the first connection proving it is rank `from` of this group; others are dropped. */
  expect(token: string, from: number, to: number, timeoutMs: number, fromSlot: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.expectation = null;
        reject(
          new CoordinatorError(
            'peer-timeout',
            `ring setup: slot ${fromSlot} (rank ${from}) did not connect within ${timeoutMs / 1000} s`,
            [fromSlot],
          ),
        );
      }, timeoutMs);
      this.expectation = {
        proof: ringProof(token, 'connect', from, to),
        reply: ringProof(token, 'accept', to, from),
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      for (const h of this.held) this.check(h);
    });
  }

  /** What is held for connections that have not proven themselves yet (bounded; see the file comment). */
  unproven(): { connections: number; bytes: number } {
    let bytes = 0;
    for (const h of this.held) bytes += h.bytes.length;
    return { connections: this.held.size, bytes };
  }

  /** Stops listening; a pending `expect` rejects with `err`. */
  close(err: Error = new Error('ring listener closed')): void {
    this.server.close();
    for (const h of this.held) h.socket.destroy();
    this.held.clear();
    const e = this.expectation;
    this.expectation = null;
    e?.reject(err);
  }

  private hold(socket: Socket): void {
    const h: HeldConnection = { socket, bytes: Buffer.alloc(0), timer: null };
    socket.on('error', () => {});
    // Connections that do not prove themselves promptly are dropped, so strays cannot pile up.
    h.timer = setTimeout(() => this.drop(h), PROOF_DEADLINE_MS);
    h.timer.unref();
    socket.on('close', () => this.drop(h));
    socket.on('data', (d: Buffer) => {
      // More than a proof before we answered: not our connector. Nothing beyond a proof is ever kept.
      if (h.bytes.length + d.length > RING_PROOF_BYTES) return this.drop(h);
      h.bytes = Buffer.concat([h.bytes, d]);
      this.check(h);
    });
    this.held.add(h);
    // Sets iterate in insertion order: the first is the oldest.
    if (this.held.size > MAX_UNPROVEN) this.drop(this.held.values().next().value!);
  }

  private check(h: HeldConnection): void {
    const e = this.expectation;
    if (!e || h.bytes.length < RING_PROOF_BYTES) return;
    // The connector sends nothing beyond its proof until we answer, so extra bytes mean a stranger.
    if (h.bytes.length !== RING_PROOF_BYTES || !ringProofValid(e.proof, h.bytes)) return this.drop(h);
    this.held.delete(h);
    if (h.timer) clearTimeout(h.timer);
    h.socket.removeAllListeners('data');
    h.socket.removeAllListeners('close');
    this.expectation = null;
    h.socket.setNoDelay(true);
    h.socket.write(e.reply);
    e.resolve(h.socket);
  }

  private drop(h: HeldConnection): void {
    if (!this.held.delete(h)) return;
    if (h.timer) clearTimeout(h.timer);
    h.socket.destroy();
  }
}

interface HeldConnection {
  socket: Socket;
  bytes: Buffer;
  timer: NodeJS.Timeout | null;
}
