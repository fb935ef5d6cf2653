/**
 * Counter-based randomness: every random draw in training and sampling is a pure function of integer
 * keys (run seed, global step, global sample index, purpose, ...). Nothing random lives only in process
 * memory, so a checkpoint plus a step number reproduces the future exactly, and a sample's noise does not
 * depend on how the global batch is split across micro-batches or workers.
 *
 * Generator: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, PractRand-clean), seeded from the
 * key by a murmur3-style mix. Values are produced in JS, so they are identical on every TF.js backend.
 */

/** What a stream is for; part of every key so that streams for different purposes never coincide. */
export enum Purpose {
  DataOrder = 1,
  Flip = 2,
  Timestep = 3,
  Noise = 4,
  Dropout = 5,
  Sampling = 6,
  Evaluation = 7,
  Init = 8,
  /** RePaint's noise: known-region forward noise, reverse-step noise and the resampling jumps. */
  Inpainting = 9,
}

function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hashes a list of non-negative integers (each < 2^53) into a 32-bit seed. */
export function hashKey(parts: readonly number[]): number {
  let h = 0x9e3779b9 ^ parts.length;
  for (const p of parts) {
    if (!Number.isInteger(p) || p < 0 || p > Number.MAX_SAFE_INTEGER) {
      throw new RangeError(`random key parts must be non-negative safe integers, got ${p}`);
    }
    const lo = p >>> 0;
    const hi = Math.floor(p / 0x100000000) >>> 0;
    h = mix32(h ^ Math.imul(lo, 0xcc9e2d51));
    h = mix32((h + 0x6b43a9b5) ^ Math.imul(hi ^ 0x27d4eb2f, 0x1b873593));
  }
  return h;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  /** A stream keyed by integers, e.g. `new Rng([seed, Purpose.Noise, step, sampleIndex])`. */
  constructor(key: readonly number[]) {
    const h = hashKey(key);
    this.a = mix32(h ^ 0x243f6a88);
    this.b = mix32(h ^ 0x85a308d3);
    this.c = mix32(h ^ 0x13198a2e);
    this.d = 1;
    // Warm-up rounds decorrelate nearby keys (sfc32's recommended 12).
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n), bias-free by rejection. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296)
      throw new RangeError(`int(n) needs 1 <= n <= 2^32, got ${n}`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextUint32();
      if (x < limit) return x % n;
    }
  }

  /** Standard normal (Box-Muller, both values used). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    // 1 - u keeps the log argument in (0, 1].
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  fillNormal(out: Float32Array, offset = 0, length = out.length - offset): Float32Array {
    for (let i = offset; i < offset + length; i++) out[i] = this.normal();
    return out;
  }

  fillUniform(out: Float32Array, offset = 0, length = out.length - offset): Float32Array {
    for (let i = offset; i < offset + length; i++) out[i] = this.uniform();
    return out;
  }

  /** Fisher-Yates permutation of 0..n-1. */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = p[i];
      p[i] = p[j];
      p[j] = tmp;
    }
    return p;
  }
}
