import type { ImageSource } from '../core/train/batch';
import { Purpose, Rng } from '../core/rng';

/** Deterministic random pixels, so the benchmarks need no dataset. */
export function syntheticImages(count: number, size: number, channels: number): ImageSource {
  const rng = new Rng([1, Purpose.Evaluation, 1]);
  const pixels = Uint8Array.from({ length: count * size * size * channels }, () => rng.int(256));
  return { count, height: size, width: size, channels, pixels };
}
