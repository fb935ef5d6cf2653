/**
 * Control messages between the coordinator and its members: newline-delimited JSON over one TCP
 * connection per member, every line validated on arrival so a malformed or hostile peer is refused
 * rather than trusted.
 */
import type { Socket } from 'node:net';
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;

/** Lines longer than this are not ours; it also bounds what an unauthenticated peer can make us buffer. */
export const MAX_LINE_BYTES = 64 * 1024;

const slot = z.number().int().min(0).max(1_000_000);
const seconds = z.number().positive().max(86_400);
const hex = z.string().regex(/^[0-9a-f]+$/);

export const JoinSchema = z.object({
  type: z.literal('join'),
  version: z.literal(PROTOCOL_VERSION),
  runId: z.string().min(1).max(256),
  execution: z.string().max(256),
  attempt: z.number().int().min(0),
  slot,
  expectedSlots: z.array(slot).min(1).max(4096),
  minWorkers: z.number().int().min(1),
  rendezvousSeconds: seconds,
  startStep: z.number().int().min(0),
  livenessSeconds: seconds,
  dataAddress: z.string().min(3).max(300),
  wire: z.enum(['fp32', 'bf16']),
  proof: hex.max(128),
});
export type JoinMessage = z.infer<typeof JoinSchema>;

/** The join's fields in the fixed order the proof covers (everything but the proof itself). */
export function joinProofFields(j: Omit<JoinMessage, 'proof' | 'type'>): unknown[] {
  return [
    j.version,
    j.runId,
    j.execution,
    j.attempt,
    j.slot,
    j.expectedSlots,
    j.minWorkers,
    j.rendezvousSeconds,
    j.startStep,
    j.livenessSeconds,
    j.dataAddress,
    j.wire,
  ];
}

export const ClientMessageSchema = z.discriminatedUnion('type', [
  JoinSchema,
  z.object({ type: z.literal('ping') }),
  /** Sent on entering an all-reduce: the coordinator's straggler report. */
  z.object({ type: z.literal('reduce'), step: z.number().int().min(0), computeSeconds: z.number().min(0) }),
  z.object({ type: z.literal('ready') }),
  /** Without a reason: a normal end. With one: the others are aborted. */
  z.object({ type: z.literal('leave'), reason: z.string().max(1000).optional() }),
  /** A failure this member saw on the data path, attributed to `slots`; the others are aborted. */
  z.object({
    type: z.literal('fault'),
    kind: z.enum(['peer-lost', 'peer-timeout']),
    slots: z.array(slot).max(4096),
    message: z.string().max(1000),
  }),
]);
export type ClientMessage = z.infer<typeof ClientMessageSchema>;

export const ServerMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('challenge'), version: z.number().int(), nonce: hex }),
  z.object({ type: z.literal('refused'), reason: z.string() }),
  z.object({ type: z.literal('not-admitted'), reason: z.string() }),
  z.object({
    type: z.literal('failed'),
    kind: z.enum(['not-enough-workers', 'start-step-mismatch']),
    message: z.string(),
  }),
  z.object({ type: z.literal('waiting'), joined: z.array(slot), expected: z.array(slot) }),
  z.object({
    type: z.literal('group'),
    rank: z.number().int().min(0),
    world: z.number().int().min(1),
    slots: z.array(slot),
    peers: z.array(z.string()),
    token: hex,
  }),
  z.object({
    type: z.literal('abort'),
    kind: z.enum(['peer-lost', 'peer-timeout']),
    slots: z.array(slot),
    reason: z.string(),
  }),
  z.object({ type: z.literal('straggler'), message: z.string() }),
  z.object({ type: z.literal('ping') }),
]);
export type ServerMessage = z.infer<typeof ServerMessageSchema>;

export function send(socket: Socket, message: ClientMessage | ServerMessage): void {
  if (!socket.destroyed && socket.writable) socket.write(`${JSON.stringify(message)}\n`);
}

/**
 * Splits a socket's bytes into lines and parses each with `schema`; any oversize line, invalid JSON or
 * schema mismatch goes to `onInvalid` once and stops delivery.
 */
export function readMessages<T>(
  socket: Socket,
  schema: z.ZodType<T>,
  onMessage: (message: T) => void,
  onInvalid: (reason: string) => void,
): void {
  let pending = '';
  let broken = false;
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => {
    if (broken) return;
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      const message = parseLine(line, schema);
      if (typeof message === 'string') {
        broken = true;
        onInvalid(message);
        return;
      }
      onMessage(message.value);
      if (socket.destroyed) return;
    }
    if (pending.length > MAX_LINE_BYTES) {
      broken = true;
      onInvalid('message too long');
    }
  });
}

function parseLine<T>(line: string, schema: z.ZodType<T>): { value: T } | string {
  if (line.length > MAX_LINE_BYTES) return 'message too long';
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return 'message is not JSON';
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return `invalid message: ${issue.path.join('.') || '(root)'}: ${issue.message}`;
  }
  return { value: parsed.data };
}

/** "host:port" or "[v6]:port". */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`invalid address '${address}': expected host:port`);
  return { host: m[1], port };
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
