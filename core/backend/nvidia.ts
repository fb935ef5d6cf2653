/**
 * The NVIDIA GPUs of this machine, numbered as CUDA numbers them with CUDA_DEVICE_ORDER=PCI_BUS_ID (which
 * the tensorflow backend sets): the numbering of nvidia-smi, of `--gpu i` and of CUDA_VISIBLE_DEVICES.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface NvidiaGpu {
  index: number;
  name: string;
  /** 'GPU-…', when nvidia-smi reports it (CUDA_VISIBLE_DEVICES also accepts it). */
  uuid?: string;
}

/** From nvidia-smi, else the driver's /proc entries; empty when there is no NVIDIA driver. */
export function listNvidiaGpus(): NvidiaGpu[] {
  return fromNvidiaSmi() ?? fromProc('/proc/driver/nvidia/gpus');
}

function fromNvidiaSmi(): NvidiaGpu[] | null {
  let out: string;
  try {
    out = execFileSync('nvidia-smi', ['--query-gpu=index,uuid,name', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return null;
  }
  return parseNvidiaSmi(out);
}

/** Parses `nvidia-smi --query-gpu=index,uuid,name --format=csv,noheader`. */
export function parseNvidiaSmi(csv: string): NvidiaGpu[] {
  return csv
    .split('\n')
    .map((line) => line.split(',').map((field) => field.trim()))
    .filter((fields) => fields.length >= 3 && /^\d+$/.test(fields[0]))
    .map(([index, uuid, ...name]) => ({ index: Number(index), uuid, name: name.join(',') }));
}

/** /proc/driver/nvidia/gpus/<PCI bus id>/information holds "Model: <name>"; bus order is CUDA's order. */
export function fromProc(dir: string): NvidiaGpu[] {
  let buses: string[];
  try {
    buses = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return buses.map((bus, index) => {
    let name = 'NVIDIA GPU';
    try {
      const info = readFileSync(path.join(dir, bus, 'information'), 'utf8');
      name = /^Model:\s*(.+)$/m.exec(info)?.[1].trim() ?? name;
    } catch {
      // An entry without a readable information file still counts as a GPU.
    }
    return { index, name };
  });
}

/**
 * The GPU that CUDA calls device 0 in this process: the first of CUDA_VISIBLE_DEVICES (an index or a
 * UUID), else GPU 0. Undefined when it is not in `gpus`.
 */
export function firstVisibleGpu(
  gpus: NvidiaGpu[],
  visible: string | undefined = process.env.CUDA_VISIBLE_DEVICES,
): NvidiaGpu | undefined {
  const first = (visible ?? '0').split(',')[0].trim();
  if (/^\d+$/.test(first)) return gpus.find((g) => g.index === Number(first));
  return gpus.find((g) => g.uuid !== undefined && g.uuid.startsWith(first));
}

/**
 * Why `--gpu index` cannot work here, or null. An empty list (no nvidia-smi, no driver entries in /proc)
 * proves nothing, so only an index missing from a known list is refused.
 */
export function gpuChoiceProblem(index: number, gpus: NvidiaGpu[]): string | null {
  if (gpus.length === 0 || gpus.some((g) => g.index === index)) return null;
  const indices = gpus.map((g) => g.index);
  return `--gpu ${index}: this machine's NVIDIA GPUs are ${indices.length === 1 ? indices[0] : `${Math.min(...indices)}-${Math.max(...indices)}`} (${gpus.map((g) => g.name).join(', ')})`;
}
