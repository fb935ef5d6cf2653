/**
 * Deterministic all-reduce inputs shared by the coordinator tests and their worker processes: each slot's
 * buffer is reproducible from (seed, slot, length), with magnitudes spread over a few binades so the
 * summation order shows up in the low bits.
 */
export function reduceInput(seed: number, slot: number, length: number): Float32Array {
  let s = (seed * 0x9e3779b1 + slot * 0x85ebca6b + length) >>> 0;
  const next = () => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (next() - 0.5) * 2 ** Math.floor(next() * 9 - 4);
  return out;
}

/** The exact-ish reference: the float64 sum of every slot's input. */
export function referenceSum(seed: number, slots: number[], length: number): Float64Array {
  const sum = new Float64Array(length);
  for (const slot of slots) {
    const x = reduceInput(seed, slot, length);
    for (let i = 0; i < length; i++) sum[i] += x[i];
  }
  return sum;
}
