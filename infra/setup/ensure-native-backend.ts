/**
 * The native TensorFlow backend for the local trainers, installed on first use by
 * infra/tfjs-native/install.sh (CUDA build where an NVIDIA driver is, CPU build elsewhere; a minute or
 * two for the CPU build, once per machine; a few seconds per new clone; then instant).
 */
import type { BackendName } from '../../core/backend/candidate';
import { runInstaller, type InstallerOptions } from './run-installer';

export type NativeInstall = { ok: true } | { ok: false; reason: string };

export async function ensureNativeBackend(
  log: (line: string) => void,
  options: InstallerOptions = {},
): Promise<NativeInstall> {
  try {
    await runInstaller('infra/tfjs-native/install.sh', ['--if-needed'], log, options);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

/**
 * Before local trainers start on `backend`: installs the native backend when they would use it. With
 * 'auto' a failed install only costs speed and says so in one line; '--backend tensorflow' cannot do
 * without it.
 */
export async function prepareNativeBackend(
  backend: BackendName | 'auto',
  log: (line: string) => void,
  options: InstallerOptions = {},
): Promise<void> {
  if (backend !== 'auto' && backend !== 'tensorflow') return;
  const native = await ensureNativeBackend(log, options);
  if (native.ok) return;
  if (backend === 'tensorflow') {
    throw new Error(`--backend tensorflow: the native backend could not be installed: ${native.reason}`);
  }
  log(
    `the native TensorFlow backend could not be installed, so the trainer uses the next backend that ` +
      `starts (webgpu on a GPU, else wasm, several times slower): ${native.reason}`,
  );
}
