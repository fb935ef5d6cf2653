/**
 * Secrets and proofs. The cluster key never leaves the processes that hold it: each run gets its own
 * secret derived from it, and only HMAC proofs over fresh nonces cross the network, so a captured join
 * can neither be replayed against another nonce nor reveal anything that admits a different run.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export function runSecret(clusterKey: string, runId: string): Buffer {
  return createHmac('sha256', clusterKey).update(`ddpm-run:${runId}`).digest();
}

export function newNonce(): string {
  return randomBytes(32).toString('hex');
}

/** A fresh per-group secret for the ring links; it travels only over authenticated control connections. */
export function newGroupToken(): string {
  return randomBytes(32).toString('hex');
}

/** HMAC over the nonce and the join's fields, so none of them can be altered in flight. */
export function joinProof(secret: Buffer, nonce: string, fields: readonly unknown[]): string {
  return createHmac('sha256', secret)
    .update(`ddpm-join:${nonce}:${JSON.stringify(fields)}`)
    .digest('hex');
}

/** Length check first: timingSafeEqual throws on unequal lengths, and a wrong length leaks nothing. */
export function proofsEqual(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'hex');
  const b = Buffer.from(given, 'hex');
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

export const RING_PROOF_BYTES = 32;

/**
 * Proof for one direction of a ring link. `role` separates the connector's proof from the listener's
 * reply so neither can be reflected back as the other; the ranks bind it to this one link.
 */
export function ringProof(
  token: string,
  role: 'connect' | 'accept',
  fromRank: number,
  toRank: number,
): Buffer {
  return createHmac('sha256', Buffer.from(token, 'hex'))
    .update(`ddpm-ring:${role}:${fromRank}->${toRank}`)
    .digest();
}

export function ringProofValid(expected: Buffer, given: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(expected, given);
}
