/**
 * The coordinator: authenticates trainers, runs one rendezvous per (run, attempt), hands each group
 * its ring (ranks, peer addresses, link token), and watches members so that a lost one aborts the rest
 * of its group at once instead of leaving them blocked in an all-reduce. Gradient bytes never pass here.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { joinProof, newGroupToken, newNonce, proofsEqual, runSecret } from './auth';
import {
  ClientMessageSchema,
  joinProofFields,
  PROTOCOL_VERSION,
  readMessages,
  send,
  type ClientMessage,
  type JoinMessage,
  type ServerMessage,
} from './protocol';

export interface CoordinatorServerOptions {
  clusterKey: string;
  /** Loopback unless configured otherwise: the control protocol is authenticated, not encrypted. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Lines without prefix or newline; defaults to stderr with a "[coordinator]" prefix. */
  log?: (line: string) => void;
  /** How long a connection may take to send a valid join. */
  authTimeoutSeconds?: number;
  /** How long an ended or failed rendezvous is remembered, so late joiners are turned away. */
  tombstoneSeconds?: number;
}

const TICK_MS = 250;
const PING_EVERY_TICKS = 4;
/** Straggler rule: far above the median in relative and absolute terms (noise on short steps is not). */
const STRAGGLER_RATIO = 1.5;
const STRAGGLER_EXCESS_SECONDS = 1;
/** Step reports kept per group; older incomplete ones (a member that never reported) are dropped. */
const MAX_PENDING_STEP_REPORTS = 32;

interface Connection {
  socket: Socket;
  nonce: string;
  lastSeen: number;
  opened: number;
  member: Member | null;
}

interface Member {
  conn: Connection;
  slot: number;
  startStep: number;
  dataAddress: string;
  livenessMs: number;
  /** Left normally, was lost, or was sent away: no further messages or aborts for it. */
  gone: boolean;
  /** Its ring links are up. */
  ready: boolean;
  rendezvous: Rendezvous;
}

type RendezvousState = 'open' | 'active' | 'failed' | 'ended';

interface Rendezvous {
  key: string;
  runId: string;
  execution: string;
  attempt: number;
  expectedSlots: number[];
  minWorkers: number;
  wire: string;
  state: RendezvousState;
  members: Map<number, Member>;
  timer: NodeJS.Timeout | null;
  /** Set when the group forms: members in rank order. */
  ranks: Member[];
  reports: Map<number, Map<number, number>>;
  endedAt: number;
}

export class CoordinatorServer {
  private readonly server: Server;
  private readonly connections = new Set<Connection>();
  private readonly rendezvous = new Map<string, Rendezvous>();
  private readonly log: (line: string) => void;
  private readonly authTimeoutMs: number;
  private readonly tombstoneMs: number;
  private ticker: NodeJS.Timeout | null = null;
  private ticks = 0;
  private lastTick = 0;
  private bound: { host: string; port: number } | null = null;

  constructor(private readonly opts: CoordinatorServerOptions) {
    if (!opts.clusterKey) throw new Error('the coordinator needs a cluster key');
    const sink = opts.log ?? ((line) => process.stderr.write(`[coordinator] ${line}\n`));
    // Lines quote what peers send (run IDs, reasons), before and after they prove anything.
    this.log = (line) => sink(escapeControlCharacters(line));
    this.authTimeoutMs = (opts.authTimeoutSeconds ?? 10) * 1000;
    this.tombstoneMs = (opts.tombstoneSeconds ?? 3600) * 1000;
    this.server = createServer((socket) => this.accept(socket));
  }

  get address(): { host: string; port: number } | null {
    return this.bound;
  }

  listen(): Promise<{ host: string; port: number }> {
    const host = this.opts.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 7077, host, () => {
        this.server.off('error', reject);
        const addr = this.server.address();
        if (addr === null || typeof addr === 'string') return reject(new Error('unexpected listen address'));
        this.bound = { host, port: addr.port };
        this.lastTick = Date.now();
        this.ticker = setInterval(() => this.tick(), TICK_MS);
        resolve(this.bound);
      });
    });
  }

  async close(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    for (const r of this.rendezvous.values()) if (r.timer) clearTimeout(r.timer);
    for (const c of this.connections) c.socket.destroy();
    this.connections.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const now = Date.now();
    const conn: Connection = { socket, nonce: newNonce(), lastSeen: now, opened: now, member: null };
    this.connections.add(conn);
    socket.on('error', () => {});
    socket.on('close', () => {
      this.connections.delete(conn);
      if (conn.member) this.lose(conn.member, 'its connection closed');
    });
    readMessages(
      socket,
      ClientMessageSchema,
      (m) => this.receive(conn, m),
      (reason) => this.reject(conn, reason),
    );
    send(socket, { type: 'challenge', version: PROTOCOL_VERSION, nonce: conn.nonce });
  }

  private receive(conn: Connection, m: ClientMessage): void {
    conn.lastSeen = Date.now();
    const member = conn.member;
    if (!member) {
      if (m.type === 'join') this.join(conn, m);
      else this.reject(conn, 'expected a join');
      return;
    }
    switch (m.type) {
      case 'join':
        this.reject(conn, 'already joined');
        return;
      case 'ping':
        return;
      case 'ready':
        this.memberReady(member);
        return;
      case 'reduce':
        this.report(member, m.step, m.computeSeconds);
        return;
      case 'fault':
        this.log(`${label(member.rendezvous)}: slot ${member.slot} reports: ${m.message}`);
        this.abortOthers(
          member.rendezvous,
          m.kind,
          m.slots,
          `slot ${member.slot} reported: ${m.message}`,
          member,
        );
        return;
      case 'leave':
        this.leave(member, m.reason);
        return;
    }
  }

  /** Refuses without touching any rendezvous: a rogue or misconfigured connection affects no group. */
  private reject(conn: Connection, reason: string): void {
    this.log(`refused ${describePeer(conn.socket)}: ${reason}`);
    // A member breaking protocol is lost to its group like any other.
    if (conn.member) this.lose(conn.member, `protocol error: ${reason}`);
    this.sendAndClose(conn, { type: 'refused', reason });
  }

  private sendAndClose(conn: Connection, message: ServerMessage): void {
    const member = conn.member;
    if (member) member.gone = true;
    send(conn.socket, message);
    conn.socket.end();
    setTimeout(() => conn.socket.destroy(), 1000).unref();
  }

  private join(conn: Connection, j: JoinMessage): void {
    const expected = joinProof(runSecret(this.opts.clusterKey, j.runId), conn.nonce, joinProofFields(j));
    if (!proofsEqual(expected, j.proof)) return this.reject(conn, `wrong proof for run ${j.runId}`);
    const key = JSON.stringify([j.runId, j.execution, j.attempt]);
    let r = this.rendezvous.get(key);
    if (r && r.state !== 'open') {
      const reason = `the rendezvous for ${label(r)} already ${r.state === 'failed' ? 'failed' : 'closed'}`;
      this.log(`slot ${j.slot} not admitted: ${reason}`);
      return this.sendAndClose(conn, { type: 'not-admitted', reason });
    }
    const expectedSlots = [...new Set(j.expectedSlots)].sort((a, b) => a - b);
    // Slots outside expectedSlots may join while the rendezvous is open: a replacement for a slot the
    // workflow last saw dead comes back this way. Expected slots only decide when it may close early.
    if (r) {
      const mismatch = differs(r, expectedSlots, j);
      if (mismatch) return this.reject(conn, `${mismatch} differs from the rendezvous's`);
      if (r.members.has(j.slot)) return this.reject(conn, `slot ${j.slot} already joined this rendezvous`);
    } else {
      r = {
        key,
        runId: j.runId,
        execution: j.execution,
        attempt: j.attempt,
        expectedSlots,
        minWorkers: j.minWorkers,
        wire: j.wire,
        state: 'open',
        members: new Map(),
        timer: null,
        ranks: [],
        reports: new Map(),
        endedAt: 0,
      };
      const rv = r;
      r.timer = setTimeout(() => this.closeRendezvous(rv), j.rendezvousSeconds * 1000);
      this.rendezvous.set(key, r);
    }
    const member: Member = {
      conn,
      slot: j.slot,
      startStep: j.startStep,
      dataAddress: j.dataAddress,
      livenessMs: j.livenessSeconds * 1000,
      gone: false,
      ready: false,
      rendezvous: r,
    };
    conn.member = member;
    r.members.set(j.slot, member);
    const joined = [...r.members.keys()].sort((a, b) => a - b);
    this.log(`${label(r)}: slot ${j.slot} joined (${joined.length}/${expectedSlots.length})`);
    send(conn.socket, { type: 'waiting', joined, expected: expectedSlots });
    if (expectedSlots.every((s) => r.members.has(s))) this.closeRendezvous(r);
  }

  private closeRendezvous(r: Rendezvous): void {
    if (r.state !== 'open') return;
    if (r.timer) clearTimeout(r.timer);
    r.timer = null;
    const members = [...r.members.values()].sort((a, b) => a.slot - b.slot);
    if (members.length < r.minWorkers) {
      const message =
        `only ${members.length} of ${r.expectedSlots.length} expected workers joined ${label(r)} ` +
        `in time (at least ${r.minWorkers} needed)`;
      return this.fail(r, members, 'not-enough-workers', message);
    }
    const steps = new Set(members.map((m) => m.startStep));
    if (steps.size > 1) {
      const detail = members.map((m) => `slot ${m.slot} at step ${m.startStep}`).join(', ');
      return this.fail(r, members, 'start-step-mismatch', `members resumed from different steps: ${detail}`);
    }
    r.state = 'active';
    r.ranks = members;
    const token = newGroupToken();
    const slots = members.map((m) => m.slot);
    const peers = members.map((m) => m.dataAddress);
    members.forEach((m, rank) =>
      send(m.conn.socket, { type: 'group', rank, world: members.length, slots, peers, token }),
    );
    this.log(`${label(r)}: group formed, ranks = slots ${slots.join(',')}`);
  }

  private fail(
    r: Rendezvous,
    members: Member[],
    kind: 'not-enough-workers' | 'start-step-mismatch',
    message: string,
  ): void {
    r.state = 'failed';
    r.endedAt = Date.now();
    this.log(`${label(r)}: ${message}`);
    for (const m of members) this.sendAndClose(m.conn, { type: 'failed', kind, message });
  }

  private memberReady(member: Member): void {
    const r = member.rendezvous;
    if (r.state !== 'active') return;
    member.ready = true;
    if (r.ranks.every((m) => m.ready)) this.log(`${label(r)}: ring ready (${r.ranks.length} members)`);
  }

  private leave(member: Member, reason: string | undefined): void {
    if (member.gone) return;
    const r = member.rendezvous;
    if (reason === undefined) {
      // A normal end: members finish at slightly different times, so nobody is aborted.
      member.gone = true;
      if (r.state === 'open') r.members.delete(member.slot);
      this.log(`${label(r)}: slot ${member.slot} left`);
      this.maybeEnd(r);
      return;
    }
    this.lose(member, `it left: ${reason}`);
  }

  /** A member that is gone without a normal leave: the rest of an active group must stop now. */
  private lose(member: Member, why: string): void {
    if (member.gone) return;
    member.gone = true;
    const r = member.rendezvous;
    if (r.state === 'open') {
      // Before the group forms a departure costs nothing: the slot may even join again.
      r.members.delete(member.slot);
      this.log(`${label(r)}: slot ${member.slot} dropped out of the rendezvous (${why})`);
      return;
    }
    if (r.state !== 'active') return;
    this.log(`${label(r)}: slot ${member.slot} lost (${why}); aborting the others`);
    this.abortOthers(r, 'peer-lost', [member.slot], `slot ${member.slot} lost: ${why}`, member);
    this.maybeEnd(r);
  }

  private abortOthers(
    r: Rendezvous,
    kind: 'peer-lost' | 'peer-timeout',
    slots: number[],
    reason: string,
    except: Member,
  ): void {
    for (const m of r.ranks) {
      if (m !== except && !m.gone) send(m.conn.socket, { type: 'abort', kind, slots, reason });
    }
  }

  private maybeEnd(r: Rendezvous): void {
    if (r.state === 'active' && r.ranks.every((m) => m.gone)) {
      r.state = 'ended';
      r.endedAt = Date.now();
      this.log(`${label(r)}: group ended`);
    }
  }

  private report(member: Member, step: number, computeSeconds: number): void {
    const r = member.rendezvous;
    if (r.state !== 'active') return;
    let byStep = r.reports.get(step);
    if (!byStep) {
      byStep = new Map();
      r.reports.set(step, byStep);
      if (r.reports.size > MAX_PENDING_STEP_REPORTS) r.reports.delete(r.reports.keys().next().value!);
    }
    byStep.set(member.slot, computeSeconds);
    const live = r.ranks.filter((m) => !m.gone || byStep.has(m.slot));
    if (byStep.size < live.length) return;
    r.reports.delete(step);
    const line = stragglerLine(r, step, byStep);
    if (!line) return;
    this.log(line);
    for (const m of r.ranks) if (!m.gone) send(m.conn.socket, { type: 'straggler', message: line });
  }

  private tick(): void {
    const now = Date.now();
    // If this process itself was stalled, the silence we would measure is ours, not the members'.
    const lag = now - this.lastTick - TICK_MS;
    this.lastTick = now;
    if (lag > 1000) for (const c of this.connections) c.lastSeen += lag;
    const ping = ++this.ticks % PING_EVERY_TICKS === 0;
    for (const c of this.connections) {
      const m = c.member;
      if (!m) {
        if (now - c.opened > this.authTimeoutMs) this.reject(c, 'no join in time');
        continue;
      }
      if (m.gone) continue;
      if (now - c.lastSeen > m.livenessMs) {
        this.lose(m, `silent for ${((now - c.lastSeen) / 1000).toFixed(1)} s`);
        c.socket.destroy();
        continue;
      }
      if (ping) send(c.socket, { type: 'ping' });
    }
    for (const [key, r] of this.rendezvous) {
      if ((r.state === 'ended' || r.state === 'failed') && now - r.endedAt > this.tombstoneMs)
        this.rendezvous.delete(key);
    }
  }
}

/**
 * A log line with every control character (newlines, carriage returns, terminal escapes) written as an
 * escape sequence, so no peer-supplied text can end the line early, overwrite it or forge the next one.
 */
export function escapeControlCharacters(line: string): string {
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  return line.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

function label(r: { runId: string; execution: string; attempt: number }): string {
  return `run ${r.runId}${r.execution ? ` execution ${r.execution}` : ''} attempt ${r.attempt}`;
}

function describePeer(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}

function differs(r: Rendezvous, expectedSlots: number[], j: JoinMessage): string | null {
  if (expectedSlots.join(',') !== r.expectedSlots.join(',')) return 'expectedSlots';
  if (j.minWorkers !== r.minWorkers) return 'minWorkers';
  if (j.wire !== r.wire) return 'wire format';
  return null;
}

/** The straggler report for one step, or null when no rank is far behind the others. */
export function stragglerLine(
  r: { runId: string; execution: string; attempt: number },
  step: number,
  computeBySlot: Map<number, number>,
): string | null {
  if (computeBySlot.size < 2) return null;
  const times = [...computeBySlot.values()].sort((a, b) => a - b);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  const slow = [...computeBySlot].filter(
    ([, s]) => s > STRAGGLER_RATIO * median && s > median + STRAGGLER_EXCESS_SECONDS,
  );
  if (slow.length === 0) return null;
  const who = slow.map(([slot, s]) => `slot ${slot} computed ${s.toFixed(2)} s`).join(', ');
  return `straggler: ${label(r)} step ${step}: ${who} vs median ${median.toFixed(2)} s`;
}
