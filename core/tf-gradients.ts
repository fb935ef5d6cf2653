/**
 * tfjs-core's CommonJS build ships the ops but not their gradient definitions; the `@tensorflow/tfjs`
 * bundle registers all of them (against the same tfjs-core instance) when it is loaded. Loaded lazily so
 * code that never differentiates does not pay for it.
 */
let registered = false;

export function registerGradients(): void {
  if (registered) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('@tensorflow/tfjs');
  registered = true;
}
