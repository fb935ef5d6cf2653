/**
 * Entry point of the self-contained benchmark bundle that bench/gpu/run-on-bare-gpu.sh builds: the
 * benchmark with its JS dependencies in one file, for a machine with a Node binary and nothing else.
 *
 * The backends load their packages by name at run time (core/backend/load-package.ts), which a bundler
 * cannot follow. The bundle answers those requires through stub packages next to it that call back
 * into this table, so the backend package runs against the bundle's own copy of tfjs-core.
 */
(globalThis as Record<string, unknown>).__ddpmBundledPackages = {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- bundled here, loaded lazily by name
  '@tensorflow/tfjs-backend-webgpu': () => require('@tensorflow/tfjs-backend-webgpu'),
};

// eslint-disable-next-line @typescript-eslint/no-require-imports -- after the table: the benchmark starts on load
require('../train-throughput');
