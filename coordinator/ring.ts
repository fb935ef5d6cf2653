/**
 * The data path: a ring all-reduce (reduce-scatter, then all-gather) over one TCP link to each
 * neighbour. Each rank receives from its predecessor on a connection it opened (so it can read into
 * memory it chooses) and sends to its successor on a connection it accepted.
 *
 * The buffer is cut into `world` chunks; step k sends chunk (rank - k) and receives chunk
 * (rank - k - 1), adding during the first world - 1 steps and copying afterwards. Steps are pipelined
 * at byte granularity: whatever part of a chunk has been received and reduced is forwarded at once, so
 * every link stays busy and no rank waits for a whole chunk. Chunk c is always summed in the order
 * rank c, c+1, ..., so results are bit-identical across runs for a given world size, and the
 * all-gather copies the owner's bytes so every rank ends identical. With bf16 on the wire, partial sums
 * travel rounded but accumulate in fp32, and each chunk's owner rounds the reduced chunk once, in its
 * own buffer too, before sending it round.
 */
import { connect, type Socket } from 'node:net';
import { CoordinatorError, type AllReduceInfo, type AllReduceTimings, type WireFormat } from './api';
import { RING_PROOF_BYTES, ringProof, ringProofValid } from './auth';
import { parseAddress } from './protocol';
import type { RingListener } from './ring-listener';
import { kernels } from './simd';

/** Largest single read. */
const READ_BYTES = 4 << 20;
/**
 * Unconsumed bytes beyond this pause reading (a peer running ahead into the next reduction, or an
 * all-gather copy waiting for a write): the kernel buffers the rest and TCP pushes back on the sender.
 */
const PAUSE_ABOVE_BYTES = 4 << 20;
/** Receive buffer: whatever is pending plus room for one full read. */
const SCRATCH_BYTES = PAUSE_ABOVE_BYTES + READ_BYTES;
/** The add kernel works in slices this big, so each stays in cache between staging and summing. */
const STAGE_BYTES = 256 << 10;
/** Largest single socket write: big enough to amortise syscalls, small enough to keep the pipeline fed. */
const SEGMENT_BYTES = 2 << 20;
/** A partial chunk is forwarded once this much of it is ready: fewer tiny writes, little added latency. */
const MIN_FORWARD_BYTES = 256 << 10;
/** Reads straight into the caller's buffer (all-gather, fp32) only when worth a syscall of their own. */
const MIN_DIRECT_READ_BYTES = 64 << 10;
const WATCHDOG_MS = 250;

const HEADER_BYTES = 16;
const MAGIC_FP32 = 0x34524444; // "DDR4"
const MAGIC_BF16 = 0x32524444; // "DDR2"

export interface RingParams {
  rank: number;
  world: number;
  /** Members' slots in rank order (errors name slots, which is what operators know). */
  slots: number[];
  /** Data addresses in rank order. */
  peers: string[];
  token: string;
  wire: WireFormat;
  peerTimeoutMs: number;
  /** How long to wait for both ring links to come up. */
  connectTimeoutMs: number;
}

/** One all-reduce in flight. Positions are in wire bytes within the current step's chunk. */
interface Reduction {
  buf: Float32Array;
  bytes: Uint8Array;
  /** Element bounds of the world's chunks: chunk c is [bounds[c], bounds[c + 1]). */
  bounds: number[];
  bf16: boolean;
  elem: 2 | 4;
  seq: number;
  step: number;
  steps: number;
  headerDone: boolean;
  recvStep: number;
  recvPos: number;
  headerSent: boolean;
  sendStep: number;
  sendPos: number;
  writesPending: number;
  /** Per send step: bytes whose writes completed (in order), i.e. memory the socket no longer needs. */
  sendDone: number[];
  bytesSent: number;
  started: number;
  firstByteAt: number;
  lastRecv: number;
  lastWrite: number;
  lastTick: number;
  afterFirstSend?: () => void;
  watchdog: NodeJS.Timeout | null;
  resolve: (buf: Float32Array) => void;
  reject: (err: Error) => void;
}

export class Ring {
  readonly rank: number;
  readonly world: number;
  readonly slots: number[];
  lastTimings: AllReduceTimings | null = null;

  private readonly prev: number;
  private readonly next: number;
  private readonly bf16: boolean;
  private readonly peerTimeoutMs: number;
  private recv: Socket | null = null;
  private out: Socket | null = null;
  /** Received bytes not yet consumed live in scratch[0, have); its start is 8-byte aligned. */
  private readonly kernel = kernels(SCRATCH_BYTES, STAGE_BYTES);
  private readonly scratch = this.kernel.scratch;
  /**
   * Node asks for the next read's buffer right after each read, so a target can go stale while reading
   * is paused; this one is handed out when scratch has no room, and its bytes are appended on arrival.
   */
  private readonly spill = Buffer.alloc(READ_BYTES);
  private have = 0;
  private direct: Uint8Array | null = null;
  private paused = false;
  private handshake: { expected: Buffer; done: () => void; fail: (e: Error) => void } | null = null;
  private op: Reduction | null = null;
  private seq = 0;
  private failure: Error | null = null;
  private linkDown: CoordinatorError | null = null;
  /** bf16 staging: reduce-scatter sends and all-gather sends use separate memory, so no write hazard. */
  private rsWire: Uint16Array | null = null;
  private agWire: Uint16Array | null = null;

  private listener: RingListener | null = null;

  constructor(private readonly params: RingParams) {
    const p = params;
    this.rank = p.rank;
    this.world = p.world;
    this.slots = p.slots;
    this.prev = (p.rank + p.world - 1) % p.world;
    this.next = (p.rank + 1) % p.world;
    this.bf16 = p.wire === 'bf16';
    this.peerTimeoutMs = p.peerTimeoutMs;
  }

  /**
   * Connects to the predecessor and accepts the successor, both links proven with the group token.
   * `fail` during setup rejects it. The listener is closed either way.
   */
  async establish(listener: RingListener): Promise<void> {
    const p = this.params;
    this.listener = listener;
    try {
      if (p.world === 1) return;
      const [out] = await Promise.all([
        listener.expect(p.token, this.next, p.rank, p.connectTimeoutMs, p.slots[this.next]),
        this.connectToPrev(p),
      ]);
      if (this.failure) {
        out.destroy();
        throw this.failure;
      }
      this.attachOut(out);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      throw err;
    } finally {
      listener.close();
      this.listener = null;
    }
  }

  /**
   * Sums `buf` over the ring in place. Rejects (never hangs) if a link closes, the peer stalls longer
   * than the peer timeout, the streams disagree (step, length, wire), or `fail` is called.
   */
  allReduce(buf: Float32Array, info: AllReduceInfo): Promise<Float32Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.op) return Promise.reject(new Error('an all-reduce is already in progress on this group'));
    if (this.world === 1) {
      this.lastTimings = { seconds: 0, waitSeconds: 0, bytesSent: 0 };
      return Promise.resolve(buf);
    }
    if (this.linkDown) return Promise.reject(this.linkDown);
    return new Promise((resolve, reject) => {
      const now = performance.now();
      const n = buf.length;
      const bounds = Array.from({ length: this.world + 1 }, (_, i) => Math.floor((i * n) / this.world));
      const op: Reduction = {
        buf,
        bytes: new Uint8Array(buf.buffer, buf.byteOffset, n * 4),
        bounds,
        bf16: this.bf16,
        elem: this.bf16 ? 2 : 4,
        seq: this.seq++ >>> 0,
        step: info.step,
        steps: 2 * (this.world - 1),
        headerDone: false,
        recvStep: 0,
        recvPos: 0,
        headerSent: false,
        sendStep: 0,
        sendPos: 0,
        writesPending: 0,
        sendDone: new Array<number>(2 * (this.world - 1)).fill(0),
        bytesSent: 0,
        started: now,
        firstByteAt: 0,
        lastRecv: now,
        lastWrite: now,
        lastTick: now,
        afterFirstSend: info.afterFirstSend,
        watchdog: null,
        resolve,
        reject,
      };
      if (this.bf16) this.ensureWireBuffers(n);
      this.op = op;
      op.watchdog = setInterval(() => this.watch(op), WATCHDOG_MS);
      this.pump();
      this.consume();
      this.resumeIfPaused();
    });
  }

  /** Stops everything: a pending all-reduce rejects with `err`, later ones too. Links are closed. */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    const op = this.op;
    this.op = null;
    // Closing the links also disarms any read aimed at the caller's buffer, which it owns again now.
    this.destroy();
    if (op) {
      if (op.watchdog) clearInterval(op.watchdog);
      op.reject(err);
    }
    this.handshake?.fail(err);
    this.listener?.close(err);
  }

  /** Normal end: the links are ended gracefully so peers still draining their last bytes get them. */
  close(): void {
    if (this.op) return this.fail(new Error('the group was closed during an all-reduce'));
    if (!this.failure) this.failure = new Error('the group was closed');
    for (const s of [this.recv, this.out]) {
      if (!s) continue;
      s.end();
      setTimeout(() => s.destroy(), 2000).unref();
    }
  }

  private destroy(): void {
    this.recv?.destroy();
    this.out?.destroy();
  }

  private connectToPrev(p: RingParams): Promise<void> {
    const prevSlot = p.slots[this.prev];
    const { host, port } = parseAddress(p.peers[this.prev]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(
          new CoordinatorError(
            'peer-timeout',
            `ring setup: no answer from slot ${prevSlot} (rank ${this.prev}) at ${p.peers[this.prev]} within ${p.connectTimeoutMs / 1000} s`,
            [prevSlot],
          ),
        );
      }, p.connectTimeoutMs);
      const fail = (e: Error) => {
        clearTimeout(timer);
        this.handshake = null;
        reject(e);
      };
      this.handshake = {
        expected: ringProof(p.token, 'accept', this.prev, this.rank),
        done: () => {
          clearTimeout(timer);
          this.handshake = null;
          resolve();
        },
        fail,
      };
      const socket = connect({
        host,
        port,
        noDelay: true,
        onread: { buffer: () => this.nextReadTarget(), callback: (n, b) => this.onRead(n, b) },
      });
      this.recv = socket;
      socket.on('connect', () => socket.write(ringProof(p.token, 'connect', this.rank, this.prev)));
      const lost = (why: string) => {
        const e = new CoordinatorError(
          'peer-lost',
          `ring link from slot ${prevSlot} (rank ${this.prev}) ${why}`,
          [prevSlot],
        );
        if (this.handshake) this.handshake.fail(e);
        else this.onLinkDown(e, 'recv');
      };
      socket.on('error', (e) => lost(`failed: ${e.message}`));
      socket.on('end', () => lost('closed'));
      socket.on('close', () => lost('closed'));
    });
  }

  private attachOut(out: Socket): void {
    this.out = out;
    const nextSlot = this.slots[this.next];
    const lost = (why: string) =>
      this.onLinkDown(
        new CoordinatorError('peer-lost', `ring link to slot ${nextSlot} (rank ${this.next}) ${why}`, [
          nextSlot,
        ]),
        'send',
      );
    out.on('error', (e) => lost(`failed: ${e.message}`));
    out.on('close', () => lost('closed'));
    out.on('end', () => lost('closed'));
    // Nothing is expected from the successor after its proof; reading keeps EOF visible.
    out.on('data', () => {});
  }

  /** A link went away: fatal to a reduction that still needs it; otherwise the next one fails. */
  private onLinkDown(err: CoordinatorError, side: 'recv' | 'send'): void {
    if (this.failure) return;
    if (!this.linkDown) this.linkDown = err;
    const op = this.op;
    if (!op) return;
    const needed =
      side === 'recv'
        ? op.recvStep < op.steps
        : op.sendStep < op.steps || op.writesPending > 0 || !op.headerSent;
    if (needed) this.fail(err);
  }

  private ensureWireBuffers(n: number): void {
    if (!this.rsWire || this.rsWire.length < n) {
      this.rsWire = new Uint16Array(n);
      this.agWire = new Uint16Array(n);
    }
  }

  // ---- receive side -------------------------------------------------------------------------------

  private nextReadTarget(): Uint8Array {
    this.direct = null;
    const op = this.op;
    if (!op || this.failure || this.have > 0 || !op.headerDone || op.bf16) return this.readScratch();
    const k = op.recvStep;
    if (k < this.world - 1 || k >= op.steps) return this.readScratch();
    const c = this.recvChunk(k);
    const stepBytes = (op.bounds[c + 1] - op.bounds[c]) * 4;
    const allowed = Math.min(stepBytes, op.sendDone[k - (this.world - 1)]) - op.recvPos;
    if (allowed < MIN_DIRECT_READ_BYTES) return this.readScratch();
    const start = op.bounds[c] * 4 + op.recvPos;
    this.direct = op.bytes.subarray(start, start + allowed);
    return this.direct;
  }

  private readScratch(): Uint8Array {
    if (this.have > PAUSE_ABOVE_BYTES) return this.spill;
    return this.scratch.subarray(this.have, this.have + READ_BYTES);
  }

  private onRead(n: number, target: Uint8Array): boolean {
    if (this.failure) {
      this.have = 0;
      return true;
    }
    const op = this.op;
    if (op) {
      if (op.firstByteAt === 0) op.firstByteAt = performance.now();
      op.lastRecv = performance.now();
    }
    if (target === this.direct && op) {
      this.direct = null;
      op.recvPos += n;
      this.finishRecvStepIfComplete(op);
      this.pump();
      this.maybeFinish(op);
      return true;
    }
    if (target.buffer !== this.scratch.buffer) {
      // Spill reads only happen after a pause, and reading resumes only once a full read fits again.
      this.scratch.set(target.subarray(0, n), this.have);
    } else {
      // The target was chosen after the previous read; consume() may have compacted scratch since.
      const landed = target.byteOffset - this.scratch.byteOffset;
      if (landed !== this.have) this.scratch.copyWithin(this.have, landed, landed + n);
    }
    this.have += n;
    return this.consume();
  }

  /** Consumes what it can from scratch; returns false (pause reading) when too much waits unconsumed. */
  private consume(): boolean {
    if (this.failure) return true;
    const s = this.scratch;
    let off = 0;
    let end = this.have;
    while (off < end) {
      if (this.handshake) {
        if (end - off < RING_PROOF_BYTES) break;
        const h = this.handshake;
        if (!ringProofValid(h.expected, s.subarray(off, off + RING_PROOF_BYTES))) {
          h.fail(new CoordinatorError('refused', 'ring peer failed to prove it belongs to the group'));
          return true;
        }
        off += RING_PROOF_BYTES;
        h.done();
        continue;
      }
      const op = this.op;
      if (!op || op.recvStep >= op.steps) break;
      if (!op.headerDone) {
        if (end - off < HEADER_BYTES) break;
        const problem = this.checkHeader(op, s, off);
        if (problem) {
          const prevSlot = this.slots[this.prev];
          this.fail(
            new CoordinatorError('peer-lost', `ring desync with slot ${prevSlot}: ${problem}`, [prevSlot]),
          );
          return true;
        }
        off += HEADER_BYTES;
        op.headerDone = true;
        this.finishRecvStepIfComplete(op);
        continue;
      }
      const k = op.recvStep;
      const c = this.recvChunk(k);
      const stepBytes = (op.bounds[c + 1] - op.bounds[c]) * op.elem;
      let take = Math.min(stepBytes - op.recvPos, end - off);
      const adding = k < this.world - 1;
      if (adding || op.bf16) {
        take -= take % op.elem;
        if (take === 0 && op.recvPos < stepBytes) break;
        if (off % op.elem !== 0) {
          // Typed views need aligned offsets; realigning is rare (only after an odd-sized read).
          s.copyWithin(0, off, end);
          end -= off;
          off = 0;
        }
      } else {
        // fp32 all-gather writes into memory an earlier step sent from: only once that write is done.
        take = Math.min(take, op.sendDone[k - (this.world - 1)] - op.recvPos);
        if (take <= 0 && op.recvPos < stepBytes) break;
      }
      if (take > 0) {
        const first = op.bounds[c] + op.recvPos / op.elem;
        if (adding) this.add(op, first, off, take);
        else if (op.bf16) this.copyBf16(op, first, off, take, k < op.steps - 1);
        else op.bytes.set(s.subarray(off, off + take), op.bounds[c] * 4 + op.recvPos);
        op.recvPos += take;
        off += take;
      }
      this.finishRecvStepIfComplete(op);
    }
    if (off > 0) s.copyWithin(0, off, end);
    this.have = end - off;
    const op = this.op;
    if (op) {
      this.pump();
      this.maybeFinish(op);
    }
    if (this.have > PAUSE_ABOVE_BYTES) {
      // Backpressure: the kernel buffers hold the rest until this rank catches up.
      this.paused = true;
      this.recv?.pause();
      return false;
    }
    return true;
  }

  private resumeIfPaused(): void {
    if (this.paused && this.have <= PAUSE_ABOVE_BYTES && this.recv && !this.failure) {
      this.paused = false;
      this.recv.resume();
    }
  }

  private finishRecvStepIfComplete(op: Reduction): void {
    while (op.recvStep < op.steps) {
      const c = this.recvChunk(op.recvStep);
      if (op.recvPos < (op.bounds[c + 1] - op.bounds[c]) * op.elem) return;
      // The owner of a reduced chunk rounds it once, so that every rank ends with the same values.
      if (op.bf16 && op.recvStep === this.world - 2)
        this.kernel.roundBf16(op.buf, op.bounds[c], op.bounds[c + 1]);
      op.recvStep++;
      op.recvPos = 0;
    }
  }

  private checkHeader(op: Reduction, s: Buffer, off: number): string | null {
    const magic = s.readUInt32LE(off);
    const seq = s.readUInt32LE(off + 4);
    const step = s.readUInt32LE(off + 8);
    const length = s.readUInt32LE(off + 12);
    const want = op.bf16 ? MAGIC_BF16 : MAGIC_FP32;
    if (magic !== want) {
      if (magic === MAGIC_BF16 || magic === MAGIC_FP32) return 'peers use different wire formats';
      return `bad stream header (magic 0x${magic.toString(16)})`;
    }
    if (step !== op.step >>> 0) return `it is at step ${step}, this rank at step ${op.step}`;
    if (seq !== op.seq) return `it is at reduction #${seq}, this rank at #${op.seq}`;
    if (length !== op.buf.length >>> 0) return `it reduces ${length} values, this rank ${op.buf.length}`;
    return null;
  }

  private add(op: Reduction, first: number, off: number, bytes: number): void {
    this.kernel.addInto(op.buf, first, off, bytes / op.elem, op.bf16 ? 'bf16' : 'fp32');
  }

  private copyBf16(op: Reduction, first: number, off: number, bytes: number, forward: boolean): void {
    this.kernel.widenInto(op.buf, first, off, bytes / 2);
    if (forward)
      this.agWire!.set(new Uint16Array(this.scratch.buffer, this.scratch.byteOffset + off, bytes / 2), first);
  }

  // ---- send side ----------------------------------------------------------------------------------

  /** Writes every byte that is ready to go: step 0 at once, later steps as their data arrives. */
  private pump(): void {
    const op = this.op;
    const out = this.out;
    if (!op || !out || this.failure) return;
    if (!op.headerSent) {
      const h = Buffer.alloc(HEADER_BYTES);
      h.writeUInt32LE(op.bf16 ? MAGIC_BF16 : MAGIC_FP32, 0);
      h.writeUInt32LE(op.seq, 4);
      h.writeUInt32LE(op.step >>> 0, 8);
      h.writeUInt32LE(op.buf.length >>> 0, 12);
      op.headerSent = true;
      this.write(op, h, -1, 0);
    }
    while (op.sendStep < op.steps) {
      const k = op.sendStep;
      const c = this.sendChunk(k);
      const stepBytes = (op.bounds[c + 1] - op.bounds[c]) * op.elem;
      if (op.sendPos >= stepBytes) {
        op.sendStep++;
        op.sendPos = 0;
        continue;
      }
      const ready = k === 0 ? stepBytes : this.readyBytes(op, k - 1, stepBytes);
      const avail = ready - op.sendPos;
      if (avail <= 0 || (avail < MIN_FORWARD_BYTES && ready < stepBytes)) return;
      const len = Math.min(avail, SEGMENT_BYTES);
      const view = this.wireView(op, k, c, op.sendPos, len);
      op.sendPos += len;
      this.write(op, view, k, op.sendPos);
    }
  }

  /** Bytes of the chunk sent at step k + 1 that step k has finished receiving (and reducing). */
  private readyBytes(op: Reduction, k: number, stepBytes: number): number {
    if (op.recvStep > k) return stepBytes;
    if (op.recvStep < k) return 0;
    return op.recvPos - (op.recvPos % op.elem);
  }

  private wireView(op: Reduction, k: number, c: number, pos: number, len: number): Uint8Array {
    const base = op.bounds[c];
    if (!op.bf16) return op.bytes.subarray(base * 4 + pos, base * 4 + pos + len);
    const first = base + pos / 2;
    const count = len / 2;
    let wire: Uint16Array;
    if (k < this.world - 1) {
      wire = this.rsWire!;
      this.kernel.toBf16(op.buf, first, count, wire);
    } else {
      // From the owner's own step on, values are already bf16-exact: these are copies of the result.
      wire = this.agWire!;
      if (k === this.world - 1) this.kernel.toBf16(op.buf, first, count, wire);
    }
    return new Uint8Array(wire.buffer, wire.byteOffset + first * 2, len);
  }

  private write(op: Reduction, data: Uint8Array, k: number, endPos: number): void {
    op.writesPending++;
    op.bytesSent += data.length;
    this.out!.write(data, (err) => {
      if (this.op !== op) return;
      op.writesPending--;
      op.lastWrite = performance.now();
      if (err) {
        const s = this.slots[this.next];
        this.fail(new CoordinatorError('peer-lost', `ring link to slot ${s} failed: ${err.message}`, [s]));
        return;
      }
      if (k >= 0) {
        op.sendDone[k] = endPos;
        if (op.afterFirstSend) {
          const hook = op.afterFirstSend;
          op.afterFirstSend = undefined;
          try {
            hook();
          } catch (e) {
            return this.fail(e instanceof Error ? e : new Error(String(e)));
          }
        }
      }
      // A blocked all-gather copy may be waiting for exactly this write.
      if (k >= 0 && k <= this.world - 2 && this.have > 0) {
        this.consume();
        this.resumeIfPaused();
      }
      this.maybeFinish(op);
    });
  }

  private maybeFinish(op: Reduction): void {
    if (this.op !== op || op.recvStep < op.steps || op.sendStep < op.steps || op.writesPending > 0) return;
    this.op = null;
    if (op.watchdog) clearInterval(op.watchdog);
    const now = performance.now();
    this.lastTimings = {
      seconds: (now - op.started) / 1000,
      waitSeconds: ((op.firstByteAt || now) - op.started) / 1000,
      bytesSent: op.bytesSent,
    };
    op.resolve(op.buf);
  }

  /** Peer timeout: a stalled write blames the successor, silence from the predecessor blames it. */
  private watch(op: Reduction): void {
    if (this.op !== op) return;
    const now = performance.now();
    // Time this process spent blocked (synchronous work elsewhere) is not the peers' silence.
    const lag = now - op.lastTick - WATCHDOG_MS;
    op.lastTick = now;
    if (lag > 1000) {
      op.lastRecv += lag;
      op.lastWrite += lag;
    }
    const limit = this.peerTimeoutMs;
    const secs = (limit / 1000).toFixed(1);
    if (op.writesPending > 0 && now - op.lastWrite > limit) {
      const s = this.slots[this.next];
      this.fail(
        new CoordinatorError('peer-timeout', `slot ${s} (rank ${this.next}) took no data for ${secs} s`, [s]),
      );
    } else if (op.recvStep < op.steps && now - op.lastRecv > limit) {
      const s = this.slots[this.prev];
      this.fail(
        new CoordinatorError('peer-timeout', `no data from slot ${s} (rank ${this.prev}) for ${secs} s`, [s]),
      );
    }
  }

  private sendChunk(k: number): number {
    return (((this.rank - k) % this.world) + this.world) % this.world;
  }

  private recvChunk(k: number): number {
    return (((this.rank - k - 1) % this.world) + this.world) % this.world;
  }
}
