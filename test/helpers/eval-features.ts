import type { FeatureMatrix } from '../../core/eval/frechet';

/**
 * The feature matrices of test/fixtures/eval/make_reference.py, built the same way: values are small dyadic
 * rationals from an integer hash, so Python and TypeScript hold bit-identical float32 matrices.
 */
export interface FeatureSpec {
  seed: number;
  n: number;
  d: number;
  shift: number;
  scale_half: number;
  lag: number;
}

function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function baseValue(seed: number, row: number, col: number): number {
  const h = mix32(
    (Math.imul(seed, 0x9e3779b1) + Math.imul(row, 0x85ebca6b) + Math.imul(col, 0xc2b2ae35)) >>> 0,
  );
  return ((h % 65) - 32) / 32;
}

export function fixtureFeatures(s: FeatureSpec): FeatureMatrix {
  const values = new Float32Array(s.n * s.d);
  for (let r = 0; r < s.n; r++) {
    const b = Array.from({ length: s.d }, (_, c) => baseValue(s.seed, r, c));
    for (let c = 0; c < s.d; c++) {
      let v = b[c] + 0.5 * b[(c + s.lag) % s.d];
      if (c < s.d / 2) v *= s.scale_half;
      values[r * s.d + c] = v + s.shift;
    }
  }
  return { count: s.n, dim: s.d, values };
}
