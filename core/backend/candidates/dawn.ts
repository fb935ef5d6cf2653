/**
 * WebGPU for Node from the `webgpu` package (Dawn), installed as the globals the TF.js webgpu backend
 * expects in a browser: `navigator.gpu` and the GPU* constants such as GPUBufferUsage.
 */
import path from 'node:path';
import { firstLine, loadPackage } from '../load-package';

interface Gpu {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapter | null>;
}

export interface GpuAdapter {
  isFallbackAdapter?: boolean;
  info?: {
    vendor?: string;
    architecture?: string;
    device?: string;
    description?: string;
    isFallbackAdapter?: boolean;
  };
}

interface DawnModule {
  create(options: string[]): Gpu;
  globals: Record<string, unknown>;
}

export type AdapterLookup = { ok: true; adapter: GpuAdapter } | { ok: false; reason: string };

/** One Dawn instance and adapter answer per process: creating instances repeatedly leaks native handles. */
let lookup: Promise<AdapterLookup> | undefined;

export function findAdapter(): Promise<AdapterLookup> {
  lookup ??= lookUpAdapter();
  return lookup;
}

async function lookUpAdapter(): Promise<AdapterLookup> {
  const dawn = loadDawn();
  if (!dawn.ok) return dawn;
  let gpu: Gpu;
  try {
    gpu = dawn.module.create([]);
  } catch (err) {
    return { ok: false, reason: `Dawn could not start: ${firstLine(err)}` };
  }
  installGlobals(dawn.module.globals, gpu);
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (adapter === null) {
      return { ok: false, reason: 'Dawn found no GPU adapter (no GPU, or no Vulkan loader/driver)' };
    }
    return { ok: true, adapter };
  } catch (err) {
    return { ok: false, reason: `requesting a GPU adapter failed: ${firstLine(err)}` };
  }
}

/**
 * The package's entry point is an ES module, which `require` loads in plain Node >= 20.19 but not inside
 * jest's module system; its native addon loads everywhere, so that is the fallback.
 */
function loadDawn(): { ok: true; module: DawnModule } | { ok: false; reason: string } {
  const entry = loadPackage<DawnModule>('webgpu');
  if (entry.ok) return entry;
  let packageDir: string;
  try {
    packageDir = path.dirname(require.resolve('webgpu/package.json'));
  } catch {
    return { ok: false, reason: 'the webgpu package (Dawn) is not installed' };
  }
  const arch = process.platform === 'darwin' ? 'universal' : process.arch;
  const addon = loadPackage<DawnModule>(
    path.join(packageDir, 'dist', `${process.platform}-${arch}`, 'dawn.node'),
  );
  return addon.ok ? addon : { ok: false, reason: `the webgpu package (Dawn) does not load: ${addon.reason}` };
}

function installGlobals(globals: Record<string, unknown>, gpu: Gpu): void {
  const g = globalThis as Record<string, unknown>;
  for (const [key, value] of Object.entries(globals)) {
    if (!(key in g)) g[key] = value;
  }
  // Node >= 21 has a navigator object of its own; Node 20 has none.
  if (typeof g.navigator === 'object' && g.navigator !== null) {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  } else {
    Object.defineProperty(g, 'navigator', { value: { gpu }, configurable: true, writable: true });
  }
}

export function describeAdapter(adapter: GpuAdapter): string {
  const info = adapter.info ?? {};
  const parts = [info.vendor, info.architecture, info.device, info.description].filter(
    (p) => p !== undefined && p !== '',
  );
  return [...new Set(parts)].join(' ') || 'unnamed adapter';
}

/** Software rasterisers (SwiftShader, llvmpipe) are far slower than wasm for training. */
export function isSoftwareAdapter(adapter: GpuAdapter): boolean {
  if (adapter.isFallbackAdapter === true || adapter.info?.isFallbackAdapter === true) return true;
  return /swiftshader|llvmpipe|lavapipe|software/i.test(describeAdapter(adapter));
}
