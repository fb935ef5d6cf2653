/**
 * The trainer's side: joins a rendezvous through the coordinator, sets up its ring links, and stays
 * connected so that a lost peer or a lost coordinator fails the next (or pending) all-reduce at once.
 */
import { connect, type Socket } from 'node:net';
import {
  CoordinatorError,
  type AllReduceInfo,
  type AllReduceTimings,
  type Group,
  type JoinOptions,
  type JoinResult,
} from './api';
import { joinProof, runSecret } from './auth';
import {
  joinProofFields,
  parseAddress,
  PROTOCOL_VERSION,
  readMessages,
  send,
  ServerMessageSchema,
  type JoinMessage,
  type ServerMessage,
} from './protocol';
import { Ring } from './ring';
import { RingListener } from './ring-listener';

const CONNECT_TIMEOUT_MS = 10_000;
const KEEPALIVE_MS = 1000;
/**
 * A broken ring link is seen first by the two neighbours; the coordinator knows who actually died.
 * Waiting this long for its word lets a cascade (a neighbour closing its links on abort) be blamed on
 * the right slot.
 */
const ATTRIBUTION_GRACE_MS = 500;

export async function joinGroup(opts: JoinOptions): Promise<JoinResult> {
  checkOptions(opts);
  opts.signal?.throwIfAborted();
  const listener = await RingListener.open(opts.dataHost ?? '127.0.0.1');
  let socket: Socket;
  try {
    socket = await connectControl(opts.address, opts.signal);
  } catch (err) {
    listener.close();
    throw err;
  }
  return new Member(opts, socket, listener).join();
}

function checkOptions(o: JoinOptions): void {
  const problems: string[] = [];
  if (!o.clusterKey) problems.push('clusterKey is empty');
  if (!(o.livenessSeconds > 0)) problems.push('livenessSeconds must be positive');
  if (!(o.peerTimeoutSeconds > 0)) problems.push('peerTimeoutSeconds must be positive');
  if (!(o.rendezvousSeconds > 0)) problems.push('rendezvousSeconds must be positive');
  try {
    parseAddress(o.address);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (problems.length) throw new CoordinatorError('refused', `invalid join: ${problems.join('; ')}`);
}

function connectControl(address: string, signal?: AbortSignal): Promise<Socket> {
  const { host, port } = parseAddress(address);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const fail = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onError = (e: Error) =>
      fail(new CoordinatorError('unreachable', `cannot reach the coordinator at ${address}: ${e.message}`));
    const onAbort = () => fail(abortReason(signal));
    const timer = setTimeout(
      () => onError(new Error(`no connection within ${CONNECT_TIMEOUT_MS / 1000} s`)),
      CONNECT_TIMEOUT_MS,
    );
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      cleanup();
      resolve(socket);
    });
  });
}

function abortReason(signal?: AbortSignal): Error {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r : new Error('joining the group was cancelled');
}

type Phase = 'challenge' | 'rendezvous' | 'ring' | 'member' | 'closed';

class Member implements Group {
  rank = 0;
  world = 0;
  slots: number[] = [];
  private phase: Phase = 'challenge';
  private ring: Ring | null = null;
  /** Set once: what every later all-reduce rejects with. */
  private failure: CoordinatorError | null = null;
  private failureWaiters: (() => void)[] = [];
  private settle: ((r: JoinResult | Error) => void) | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private lastHeard = Date.now();
  private lastTick = Date.now();
  private readonly log: (line: string) => void;
  private readonly onAbortSignal = () => this.settleJoin(abortReason(this.opts.signal));

  constructor(
    private readonly opts: JoinOptions,
    private readonly socket: Socket,
    private readonly listener: RingListener,
  ) {
    this.log = opts.log ?? (() => {});
  }

  get lastTimings(): AllReduceTimings | null {
    return this.ring?.lastTimings ?? null;
  }

  join(): Promise<JoinResult> {
    const result = new Promise<JoinResult>((resolve, reject) => {
      this.settle = (r) => {
        this.settle = null;
        this.opts.signal?.removeEventListener('abort', this.onAbortSignal);
        if (r instanceof Error) {
          this.shutdown();
          reject(r);
        } else {
          if (!r.admitted) this.shutdown();
          resolve(r);
        }
      };
    });
    this.opts.signal?.addEventListener('abort', this.onAbortSignal, { once: true });
    this.socket.on('error', () => {});
    this.socket.on('close', () => this.controlClosed());
    readMessages(
      this.socket,
      ServerMessageSchema,
      (m) => this.receive(m),
      (reason) => {
        this.socket.destroy();
        this.lost(new CoordinatorError('coordinator-lost', `the coordinator sent garbage: ${reason}`));
      },
    );
    this.keepalive = setInterval(() => this.tick(), KEEPALIVE_MS);
    return result;
  }

  async allReduce(buf: Float32Array, info: AllReduceInfo): Promise<Float32Array> {
    if (this.failure) throw this.failure;
    const ring = this.ring;
    if (!ring || this.phase !== 'member') throw new Error('this group is closed');
    if (info.computeSeconds !== undefined && this.world > 1)
      send(this.socket, { type: 'reduce', step: info.step, computeSeconds: info.computeSeconds });
    try {
      return await ring.allReduce(buf, info);
    } catch (err) {
      throw await this.attribute(err);
    }
  }

  async close(reason?: string): Promise<void> {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    send(this.socket, reason === undefined ? { type: 'leave' } : { type: 'leave', reason });
    if (reason === undefined) this.ring?.close();
    else this.ring?.fail(new CoordinatorError('peer-lost', `this member left: ${reason}`, [this.opts.slot]));
    this.stopTimers();
    if (this.socket.closed) return;
    // Wait for the leave to be flushed, so a normal end is never mistaken for a lost member.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, 2000);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }

  private receive(m: ServerMessage): void {
    this.lastHeard = Date.now();
    switch (m.type) {
      case 'ping':
        return;
      case 'challenge':
        return this.sendJoin(m.nonce);
      case 'refused':
        return this.settleJoin(new CoordinatorError('refused', `the coordinator refused: ${m.reason}`));
      case 'not-admitted':
        return this.settleJoin({ admitted: false, reason: m.reason });
      case 'failed':
        return this.settleJoin(new CoordinatorError(m.kind, m.message));
      case 'waiting':
        this.log(
          `joined as slot ${this.opts.slot}; slots ${m.joined.join(',')} of ${m.expected.join(',')} are in`,
        );
        return;
      case 'group':
        void this.formRing(m);
        return;
      case 'abort':
        this.lost(new CoordinatorError(m.kind, m.reason, m.slots));
        return;
      case 'straggler':
        this.log(m.message);
        return;
    }
  }

  private sendJoin(nonce: string): void {
    if (this.phase !== 'challenge') return;
    this.phase = 'rendezvous';
    const o = this.opts;
    const fields: Omit<JoinMessage, 'type' | 'proof'> = {
      version: PROTOCOL_VERSION,
      runId: o.runId,
      execution: o.execution ?? '',
      attempt: o.attempt,
      slot: o.slot,
      expectedSlots: o.expectedSlots,
      minWorkers: o.minWorkers,
      rendezvousSeconds: o.rendezvousSeconds,
      startStep: o.startStep,
      livenessSeconds: o.livenessSeconds,
      dataAddress: this.listener.address,
      wire: o.wire ?? 'fp32',
    };
    const proof = joinProof(runSecret(o.clusterKey, o.runId), nonce, joinProofFields(fields));
    send(this.socket, { type: 'join', ...fields, proof });
  }

  private async formRing(m: Extract<ServerMessage, { type: 'group' }>): Promise<void> {
    if (this.phase !== 'rendezvous') return;
    this.phase = 'ring';
    this.rank = m.rank;
    this.world = m.world;
    this.slots = m.slots;
    this.log(`group formed: rank ${m.rank} of ${m.world} (slots ${m.slots.join(',')})`);
    const peerTimeoutMs = this.opts.peerTimeoutSeconds * 1000;
    const ring = new Ring({
      rank: m.rank,
      world: m.world,
      slots: m.slots,
      peers: m.peers,
      token: m.token,
      wire: this.opts.wire ?? 'fp32',
      peerTimeoutMs,
      connectTimeoutMs: Math.max(10_000, Math.min(peerTimeoutMs, 60_000)),
    });
    this.ring = ring;
    try {
      await ring.establish(this.listener);
    } catch (err) {
      return this.settleJoin(this.failure ?? asError(err));
    }
    if (this.phase !== 'ring') return;
    this.phase = 'member';
    send(this.socket, { type: 'ready' });
    this.log(`ring ready: rank ${m.rank} of ${m.world}`);
    this.settleJoin({ admitted: true, group: this });
  }

  private settleJoin(r: JoinResult | Error): void {
    this.settle?.(r);
  }

  /** The group is broken: fail whatever is pending and everything after. */
  private lost(err: CoordinatorError): void {
    if (this.settle) return this.settleJoin(err);
    if (this.failure || this.phase === 'closed') return;
    this.failure = err;
    this.log(`group failed: ${err.message}`);
    this.ring?.fail(err);
    for (const w of this.failureWaiters.splice(0)) w();
  }

  private controlClosed(): void {
    if (this.phase === 'closed') return;
    this.lost(new CoordinatorError('coordinator-lost', 'the connection to the coordinator closed'));
  }

  /** Ring failures name a neighbour; prefer the coordinator's attribution if it arrives promptly. */
  private async attribute(err: unknown): Promise<unknown> {
    if (this.failure) return this.failure;
    if (!(err instanceof CoordinatorError) || (err.kind !== 'peer-lost' && err.kind !== 'peer-timeout'))
      return err;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ATTRIBUTION_GRACE_MS);
      this.failureWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (this.failure) return this.failure;
    // Nobody told the coordinator yet: make sure the rest of the group stops too.
    send(this.socket, { type: 'fault', kind: err.kind, slots: err.slots, message: err.message });
    this.failure = err;
    return err;
  }

  private tick(): void {
    const now = Date.now();
    // A blocked event loop (synchronous TF.js work) delays reading the coordinator's pings too.
    const lag = now - this.lastTick - KEEPALIVE_MS;
    this.lastTick = now;
    if (lag > 1000) this.lastHeard += lag;
    // Before the join the coordinator accepts nothing else.
    if (this.phase !== 'challenge') send(this.socket, { type: 'ping' });
    const silent = now - this.lastHeard;
    if (silent > this.opts.livenessSeconds * 1000) {
      this.socket.destroy();
      this.lost(
        new CoordinatorError(
          'coordinator-lost',
          `no word from the coordinator for ${(silent / 1000).toFixed(1)} s`,
        ),
      );
    }
  }

  private stopTimers(): void {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
  }

  /** Before admission: drop everything this attempt opened. */
  private shutdown(): void {
    this.phase = 'closed';
    this.stopTimers();
    this.listener.close();
    this.ring?.fail(new Error('join abandoned'));
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
