/**
 * The reduction's inner loops. V8 runs `dst[i] += src[i]` over Float32Arrays at about 2 ns per element
 * (scalar, converting through float64) and bf16 rounding at 3-4 ns, which on a CPU-bound host costs more
 * than the transfer itself; WebAssembly SIMD does four to eight lanes at a time. Received bytes land
 * directly in the module's memory; the caller's arrays are staged in and out in cache-sized pieces
 * (memcpy speed).
 *
 * Results are bit-identical to the scalar loops, which are also the fallback where WebAssembly SIMD is
 * unavailable: f32x4.add rounds each lane as a float32 addition does (and JS's float64 addition of two
 * float32 values, rounded back to float32, is that same correctly rounded sum); the bf16 conversions
 * are integer operations.
 */

export type AddSource = 'fp32' | 'bf16';

export interface Kernels {
  /** Where received bytes should land: the kernels read their sources from here without a copy. */
  readonly scratch: Buffer;
  readonly simd: boolean;
  /**
   * dst[first + i] += element i of the `source`-format values at scratch[srcByte...], i < count.
   * srcByte must be a multiple of the element size.
   */
  addInto(dst: Float32Array, first: number, srcByte: number, count: number, source: AddSource): void;
  /** dst[first + i] = the bf16 value at scratch[srcByte + 2i] (srcByte even), i < count. */
  widenInto(dst: Float32Array, first: number, srcByte: number, count: number): void;
  /** out[first + i] = bf16(src[first + i]) with round-to-nearest-even, i < count. */
  toBf16(src: Float32Array, first: number, count: number, out: Uint16Array): void;
  /** buf[i] = bf16(buf[i]) as float32, for i in [from, to). */
  roundBf16(buf: Float32Array, from: number, to: number): void;
}

// ---- scalar reference ---------------------------------------------------------------------------

/** Round-to-nearest-even to the upper 16 bits; NaNs stay NaN (quiet bit set so they cannot become inf). */
function bf16Bits(x: number): number {
  return (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

// Signed views keep V8's arithmetic in int32.
const scalar = {
  add(dst: Float32Array, first: number, mem: ArrayBuffer, srcByte: number, count: number, source: AddSource) {
    if (source === 'fp32') {
      const src = new Float32Array(mem, srcByte, count);
      for (let i = 0; i < count; i++) dst[first + i] += src[i];
      return;
    }
    const src = new Uint16Array(mem, srcByte, count);
    const one = new Int32Array(1);
    const asFloat = new Float32Array(one.buffer);
    for (let i = 0; i < count; i++) {
      one[0] = src[i] << 16;
      dst[first + i] += asFloat[0];
    }
  },
  widen(dst: Float32Array, first: number, mem: ArrayBuffer, srcByte: number, count: number) {
    const src = new Uint16Array(mem, srcByte, count);
    const bits = new Int32Array(dst.buffer, dst.byteOffset, dst.length);
    for (let i = 0; i < count; i++) bits[first + i] = src[i] << 16;
  },
  toBf16(src: Float32Array, first: number, count: number, out: Uint16Array) {
    const bits = new Int32Array(src.buffer, src.byteOffset, src.length);
    for (let i = first; i < first + count; i++) out[i] = bf16Bits(bits[i]);
  },
  roundBf16(buf: Float32Array, from: number, to: number) {
    const bits = new Int32Array(buf.buffer, buf.byteOffset, buf.length);
    for (let i = from; i < to; i++) bits[i] = bf16Bits(bits[i]) << 16;
  },
};

// ---- the WebAssembly module, assembled by hand ----------------------------------------------------

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
}

const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const i32 = (n: number) => [0x41, ...sleb(n)];
const simd = (op: number) => [0xfd, ...leb(op)];
/** v128.load / v128.store with align 4 (addresses need not be 16-byte aligned) and a byte offset. */
const load = (offset = 0) => [...simd(0x00), 0x02, ...leb(offset)];
const store = (offset = 0) => [...simd(0x0b), 0x02, ...leb(offset)];
const splat = (n: number) => [...i32(n), ...simd(0x11)]; // i32x4.splat
const [AND, OR, BITSELECT, GT_U, SHL, SHR_U, ADD_I32, NARROW_U, ADD_F32] = [
  0x4e, 0x50, 0x52, 0x3c, 0xab, 0xad, 0xae, 0x86, 0xe4,
].map(simd);
/** u16 lanes (low or high four) -> f32 bits: zero-extend, shift into the high half. */
const widen = (high: boolean) => [...simd(high ? 0xaa : 0xa9), ...i32(16), ...SHL];
const advance = (p: number, step: number) => [...get(p), ...i32(step), 0x6a, ...set(p)];

// Parameters of every function: ($dst $src $end), byte addresses; loops run while $dst < $end and at
// least once, so callers pass at least one full round.
const [DST, SRC, END] = [0, 1, 2];

function func(locals: number, setup: number[], round: number[]): number[] {
  const localDecl = locals ? [0x01, locals, 0x7b] : [0x00]; // v128 locals
  const loop = [0x03, 0x40, ...round, ...get(DST), ...get(END), 0x49, 0x0d, 0x00, 0x0b]; // br_if $dst <u $end
  const body = [...localDecl, ...setup, ...loop, 0x0b];
  return [...leb(body.length), ...body];
}

/** dst f32 += src f32, 4 lanes per round. */
// prettier-ignore
const addF32 = func(0, [], [
  ...get(DST), ...get(DST), ...load(), ...get(SRC), ...load(), ...ADD_F32, ...store(),
  ...advance(DST, 16), ...advance(SRC, 16),
]);

/** dst f32 (+)= widen(src bf16), 8 lanes per round: `add` false just widens. */
function bf16ToF32(add: boolean): number[] {
  // prettier-ignore
  const half = (high: boolean) => [
    ...get(DST),
    ...(add ? [...get(DST), ...load(high ? 16 : 0)] : []),
    ...get(SRC), ...load(), ...widen(high),
    ...(add ? ADD_F32 : []),
    ...store(high ? 16 : 0),
  ];
  return func(0, [], [...half(false), ...half(true), ...advance(DST, 32), ...advance(SRC, 16)]);
}

/** dst bf16 = round(src f32), 8 lanes per round; locals: $x and the constants. */
const narrowBf16 = (() => {
  const [X, C7FFF, C1, CABS, CINF, C40] = [3, 4, 5, 6, 7, 8];
  // prettier-ignore
  const consts = [
    ...splat(0x7fff), ...set(C7FFF), ...splat(1), ...set(C1),
    ...splat(0x7fffffff), ...set(CABS), ...splat(0x7f800000), ...set(CINF), ...splat(0x40), ...set(C40),
  ];
  // prettier-ignore
  const one = (offset: number) => [
    ...get(SRC), ...load(offset), ...set(X),
    // NaN: keep it NaN with the quiet bit, x >>> 16 | 0x40
    ...get(X), ...i32(16), ...SHR_U, ...get(C40), ...OR,
    // otherwise (x + 0x7fff + ((x >>> 16) & 1)) >>> 16, wrapping like the scalar version
    ...get(X), ...get(C7FFF), ...ADD_I32, ...get(X), ...i32(16), ...SHR_U, ...get(C1), ...AND, ...ADD_I32,
    ...i32(16), ...SHR_U,
    ...get(X), ...get(CABS), ...AND, ...get(CINF), ...GT_U,
    ...BITSELECT,
  ];
  // prettier-ignore
  return func(6, consts, [
    ...get(DST), ...one(0), ...one(16), ...NARROW_U, ...store(),
    ...advance(DST, 16), ...advance(SRC, 32),
  ]);
})();

const EXPORTS = ['add', 'addBf16', 'widen', 'narrow'] as const;

function moduleBytes(pages: number): Uint8Array {
  const bodies = [addF32, bf16ToF32(true), bf16ToF32(false), narrowBf16];
  const section = (id: number, content: number[]) => [id, ...leb(content.length), ...content];
  const name = (s: string) => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00]), // type 0: (i32 i32 i32) -> ()
    ...section(3, [bodies.length, ...bodies.map(() => 0x00)]),
    // Fixed size (min = max): the memory never grows, so views over it are never detached.
    ...section(5, [0x01, 0x01, ...leb(pages), ...leb(pages)]),
    ...section(7, [
      EXPORTS.length + 1,
      ...EXPORTS.flatMap((e, i) => [...name(e), 0x00, i]),
      ...[...name('mem'), 0x02, 0x00],
    ]),
    ...section(10, [bodies.length, ...bodies.flat()]),
  ]);
}

/** The little of the WebAssembly API used here (the project's TypeScript lib has no DOM types). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

type Loop = (dst: number, src: number, end: number) => void;
type WasmExports = Record<(typeof EXPORTS)[number], Loop> & { mem: { buffer: ArrayBuffer } };

function instantiate(pages: number): WasmExports | null {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (!wasm) return null;
  try {
    return new wasm.Instance(new wasm.Module(moduleBytes(pages)), {}).exports as WasmExports;
  } catch {
    // No SIMD support (or no WebAssembly at all): the scalar loops do the same arithmetic.
    return null;
  }
}

/** `scratchBytes` of receive memory; the caller's arrays pass through in pieces of `stageBytes`. */
export function kernels(scratchBytes: number, stageBytes: number): Kernels {
  const stageFloats = Math.floor(stageBytes / 32) * 8;
  const stageAt = Math.ceil(scratchBytes / 16) * 16;
  const stage16At = stageAt + stageFloats * 4;
  const w = instantiate(Math.ceil((stage16At + stageFloats * 2) / 65536));
  if (!w) {
    const scratch = Buffer.from(new ArrayBuffer(scratchBytes));
    return {
      scratch,
      simd: false,
      addInto: (dst, first, srcByte, count, source) =>
        scalar.add(dst, first, scratch.buffer, scratch.byteOffset + srcByte, count, source),
      widenInto: (dst, first, srcByte, count) =>
        scalar.widen(dst, first, scratch.buffer, scratch.byteOffset + srcByte, count),
      toBf16: scalar.toBf16,
      roundBf16: scalar.roundBf16,
    };
  }
  const mem = w.mem.buffer;
  const stage = new Float32Array(mem, stageAt, stageFloats);
  const stage16 = new Uint16Array(mem, stage16At, stageFloats);
  /** Runs `piece(first, n, vec)` over [first, first + count) in stage-sized pieces; vec = n rounded down to 8. */
  const pieces = (first: number, count: number, piece: (first: number, n: number, vec: number) => void) => {
    for (let done = 0; done < count;) {
      const n = Math.min(count - done, stageFloats);
      piece(first + done, n, n - (n % 8));
      done += n;
    }
  };
  return {
    scratch: Buffer.from(mem, 0, scratchBytes),
    simd: true,
    addInto(dst, first, srcByte, count, source) {
      const size = source === 'fp32' ? 4 : 2;
      const loop = source === 'fp32' ? w.add : w.addBf16;
      pieces(first, count, (at, n, vec) => {
        const src = srcByte + (at - first) * size;
        if (vec > 0) {
          stage.set(dst.subarray(at, at + vec));
          loop(stageAt, src, stageAt + vec * 4);
          dst.set(stage.subarray(0, vec), at);
        }
        if (vec < n) scalar.add(dst, at + vec, mem, src + vec * size, n - vec, source);
      });
    },
    widenInto(dst, first, srcByte, count) {
      pieces(first, count, (at, n, vec) => {
        const src = srcByte + (at - first) * 2;
        if (vec > 0) {
          w.widen(stageAt, src, stageAt + vec * 4);
          dst.set(stage.subarray(0, vec), at);
        }
        if (vec < n) scalar.widen(dst, at + vec, mem, src + vec * 2, n - vec);
      });
    },
    toBf16(src, first, count, out) {
      pieces(first, count, (at, n, vec) => {
        if (vec > 0) {
          stage.set(src.subarray(at, at + vec));
          w.narrow(stage16At, stageAt, stage16At + vec * 2);
          out.set(stage16.subarray(0, vec), at);
        }
        if (vec < n) scalar.toBf16(src, at + vec, n - vec, out);
      });
    },
    roundBf16(buf, from, to) {
      pieces(from, to - from, (at, n, vec) => {
        if (vec > 0) {
          stage.set(buf.subarray(at, at + vec));
          w.narrow(stage16At, stageAt, stage16At + vec * 2);
          w.widen(stageAt, stage16At, stageAt + vec * 4);
          buf.set(stage.subarray(0, vec), at);
        }
        if (vec < n) scalar.roundBf16(buf, at + vec, at + n);
      });
    },
  };
}
