/** Bytes [0, 255] to the [-1, 1] range DDPM trains in: x / 127.5 - 1. */
export function toFloatRange(pixels: Uint8Array): Float32Array {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i] / 127.5 - 1;
  return out;
}

/**
 * Model outputs in [-1, 1] back to bytes. Samples overshoot the range, so values are clipped first;
 * NaN becomes 0, as a Uint8Array would store it anyway, rather than throwing mid-way through a grid.
 */
export function toUint8Range(values: Float32Array | readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const clipped = Math.min(1, Math.max(-1, values[i]));
    out[i] = Number.isNaN(clipped) ? 0 : Math.round((clipped + 1) * 127.5);
  }
  return out;
}
