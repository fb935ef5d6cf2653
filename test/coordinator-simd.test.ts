/** The vectorized reduction kernel must be a drop-in for the scalar loop, bit for bit. */
import { kernels } from '../coordinator/simd';

function hardValues(n: number, seed: number): Float32Array {
  const bits = new Uint32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    bits[i] = s;
  }
  const out = new Float32Array(bits.buffer);
  // Random bit patterns cover every exponent (subnormals, huge, inf, NaN); add the classic edge cases.
  out.set([0, -0, Infinity, -Infinity, 1e-45, -1e-45, 3.4028234663852886e38, 1, -1, 0.1].slice(0, n));
  return out;
}

const sameValues = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && a.every((v, i) => Object.is(v, b[i]) || (Number.isNaN(v) && Number.isNaN(b[i])));

const CASES = [
  [100_003, 5, 0],
  [7, 0, 12],
  [3, 1, 4],
  [40_000, 17, 1000],
];

test('fp32: the kernel adds exactly as a float32 scalar loop does, tails and offsets included', () => {
  const kernel = kernels(1 << 20, 64 << 10);
  expect(kernel.simd).toBe(true);
  for (const [count, first, srcByte] of CASES) {
    const src = hardValues(count, count + first);
    kernel.scratch.set(new Uint8Array(src.buffer), srcByte);
    const dst = hardValues(first + count, 99 + srcByte);
    const expected = dst.slice();
    for (let i = 0; i < count; i++) expected[first + i] += src[i];
    kernel.addInto(dst, first, srcByte, count, 'fp32');
    expect(sameValues(dst, expected)).toBe(true);
  }
});

test('bf16: the kernel widens and adds exactly as the scalar loop does', () => {
  const kernel = kernels(1 << 20, 64 << 10);
  for (const [count, first, srcByte] of CASES) {
    const src = new Uint16Array(hardValues(count, count).buffer).slice(0, count);
    kernel.scratch.set(new Uint8Array(src.buffer), srcByte / 2);
    const dst = hardValues(first + count, 7 + srcByte);
    const expected = dst.slice();
    const widened = new Float32Array(new Int32Array(Array.from(src, (h) => h << 16)).buffer);
    for (let i = 0; i < count; i++) expected[first + i] += widened[i];
    kernel.addInto(dst, first, srcByte / 2, count, 'bf16');
    expect(sameValues(dst, expected)).toBe(true);
  }
});

/** Reference: round-to-nearest-even on the upper half of the bits; NaN stays a (quiet) NaN. */
function bf16Of(f: number): number {
  const u = new Uint32Array(new Float32Array([f]).buffer)[0];
  if (Number.isNaN(f)) return (u >>> 16) | 0x40;
  const lower = u & 0xffff;
  const upper = u >>> 16;
  return (lower > 0x8000 || (lower === 0x8000 && upper & 1) ? upper + 1 : upper) & 0xffff;
}

test('bf16 conversions: rounding, widening and in-place rounding match the reference', () => {
  const kernel = kernels(1 << 20, 64 << 10);
  for (const [count, first] of [
    [100_003, 5],
    [7, 0],
    [40_000, 17],
  ]) {
    const src = hardValues(first + count, count);
    const out = new Uint16Array(first + count);
    kernel.toBf16(src, first, count, out);
    const expected = Array.from(src, bf16Of).map((h, i) => (i < first ? 0 : h));
    expect(Array.from(out)).toEqual(expected);

    kernel.scratch.set(new Uint8Array(out.buffer, first * 2, count * 2), 6);
    const widened = new Float32Array(first + count);
    kernel.widenInto(widened, first, 6, count);
    const bits = new Uint32Array(widened.buffer);
    expect(bits.every((b, i) => b === (i < first ? 0 : out[i] * 65536))).toBe(true);

    const rounded = src.slice();
    kernel.roundBf16(rounded, first, first + count);
    expect(sameValues(rounded.subarray(0, first), src.subarray(0, first))).toBe(true);
    expect(sameValues(rounded.subarray(first), widened.subarray(first))).toBe(true);
  }
});
