import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import type { BackendInfo } from '../core/backend';

export interface NvidiaGpu {
  name: string;
  memoryUsedMiB: number;
  memoryTotalMiB: number;
}

/** What nvidia-smi says about the visible NVIDIA GPUs; empty where there is no driver or no nvidia-smi. */
export function nvidiaGpus(): NvidiaGpu[] {
  try {
    const out = execFileSync(
      'nvidia-smi',
      ['--query-gpu=name,memory.used,memory.total', '--format=csv,noheader,nounits'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 },
    );
    return out
      .trim()
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => {
        const [name, used, total] = line.split(',').map((s) => s.trim());
        return { name, memoryUsedMiB: Number(used), memoryTotalMiB: Number(total) };
      });
  } catch {
    return [];
  }
}

/** The hardware a benchmark ran on: the CPU always, the GPU where the backend runs on one. */
export function describeDevice(backend: BackendInfo): { cpu: string; cpuCores: number; gpu: string | null } {
  const gpus = nvidiaGpus();
  let gpu: string | null = null;
  if (backend.name === 'webgpu') gpu = backend.detail;
  else if (backend.name === 'tensorflow' && /gpu|cuda/i.test(backend.detail) && gpus.length > 0)
    gpu = gpus.map((g) => g.name).join(', ');
  return { cpu: cpus()[0]?.model ?? 'unknown', cpuCores: availableParallelism(), gpu };
}
