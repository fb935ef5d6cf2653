/**
 * The coordinator's contract with trainer processes: how a training activity joins a group for one
 * (run, attempt), and what it gets back — its rank, the world size, and an all-reduce over a ring of its
 * peers. The coordinator arranges the ring; gradient bytes flow peer to peer, never through it.
 */

/** Gradient transfer precision. bf16 halves the bytes; every rank still ends with identical values. */
export type WireFormat = 'fp32' | 'bf16';

export interface JoinOptions {
  /** The coordinator, "host:port". */
  address: string;
  /**
   * The cluster key shared by the coordinator and its trainers (DDPM_COORDINATOR_KEY). Each run's secret
   * is derived from it and the run ID; only proofs of that secret cross the network.
   */
  clusterKey: string;
  runId: string;
  /**
   * The workflow execution (Temporal run ID) that schedules this attempt: a restarted run numbers its
   * attempts from 1 again, so the rendezvous key is (runId, execution, attempt).
   */
  execution: string;
  /** Rendezvous key within the execution: the workflow numbers each segment attempt. */
  attempt: number;
  /** This trainer's slot (its worker-specific task queue); ranks follow slot order. */
  slot: number;
  /**
   * The rendezvous closes as soon as all of these slots joined. Other slots may join while it is open
   * (a replacement for a slot believed dead); after it closed they are not admitted.
   */
  expectedSlots: number[];
  /** Fewer members than this when the rendezvous window ends: every joiner gets NotEnoughWorkers. */
  minWorkers: number;
  /** How long after the first join the rendezvous waits for expected slots that have not joined. */
  rendezvousSeconds: number;
  /** Every member must report the same step (the checkpoint it resumed from), else StartStepMismatch. */
  startStep: number;
  /** A member silent this long (no message, socket open) is presumed lost (covers dead nodes/hangs). */
  livenessSeconds: number;
  /** An all-reduce that receives nothing from its peer for this long fails (straggler or hang). */
  peerTimeoutSeconds: number;
  /** Address peers use to reach this trainer's ring listener (default 127.0.0.1). */
  dataHost?: string;
  wire?: WireFormat;
  /** Aborts a rendezvous in progress (activity cancelled). */
  signal?: AbortSignal;
  /** Progress lines for logs (who joined, ring ready, stragglers). */
  log?: (line: string) => void;
}

export interface AllReduceInfo {
  /** The training step this reduction belongs to (checked: all ranks must agree). */
  step: number;
  /** Seconds this rank computed before entering; the coordinator reports stragglers from these. */
  computeSeconds?: number;
  /** Test-only fault hook, called once after the first bytes of this reduction were sent. */
  afterFirstSend?: () => void;
}

export interface AllReduceTimings {
  /** Wall time of the reduction. */
  seconds: number;
  /** Of which: time until the first byte arrived from the peer (waiting for slower ranks). */
  waitSeconds: number;
  bytesSent: number;
}

export interface Group {
  readonly rank: number;
  readonly world: number;
  /** Members' slots in rank order. */
  readonly slots: number[];
  /**
   * Sums `buf` over all ranks in place (fixed order: identical results for a given world size) and
   * returns it. Rejects with PeerLostError / PeerTimeoutError instead of hanging when a peer is lost.
   */
  allReduce(buf: Float32Array, info: AllReduceInfo): Promise<Float32Array>;
  /** Timings of the last completed allReduce. */
  readonly lastTimings: AllReduceTimings | null;
  /**
   * Leaves the group. With `reason`, the others are told this member left (their pending or next
   * all-reduce fails fast); without, it is a normal end (all members finished the segment).
   */
  close(reason?: string): Promise<void>;
}

/** Joined: a ring member. Not admitted: the rendezvous for this attempt had already closed. */
export type JoinResult = { admitted: true; group: Group } | { admitted: false; reason: string };

export type CoordinatorErrorKind =
  | 'refused' // authentication failed or the request was malformed
  | 'unreachable' // could not connect to the coordinator
  | 'not-enough-workers'
  | 'start-step-mismatch'
  | 'peer-lost'
  | 'peer-timeout'
  | 'coordinator-lost';

export class CoordinatorError extends Error {
  constructor(
    readonly kind: CoordinatorErrorKind,
    message: string,
    /** Slots the failure is attributed to (the lost or late peers), when known. */
    readonly slots: number[] = [],
  ) {
    super(message);
    this.name = 'CoordinatorError';
  }
}
