/**
 * Long float64 loops (eigendecompositions of 2048 x 2048 covariances take a minute) call this between
 * rows: about every 100 ms it lets the event loop run, so an activity's heartbeats and cancellation keep
 * flowing. In between it costs one resolved promise.
 */
let last = performance.now();

export async function breathe(): Promise<void> {
  const now = performance.now();
  if (now - last < 100) return;
  last = now;
  await new Promise<void>((resolve) => setImmediate(resolve));
}
