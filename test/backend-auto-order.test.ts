/**
 * 'auto' backend order on hardware this machine does not have: native TensorFlow on a GPU first, then
 * WebGPU, then native TensorFlow on the CPU, then wasm; each skipped option is said once, with its
 * reason. The candidates here are FAKES standing in for a CUDA TensorFlow and a GPU adapter (this machine
 * has neither); the real candidates on this machine are covered by backend-select.test.ts. Also the GPU
 * lists the tensorflow backend names its GPU from (FAKE nvidia-smi output and /proc entries) and the
 * `--gpu i` check of the trainer worker.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFastest, type BackendInfo, type BackendName, type Candidates } from '../core/backend';
import type { Candidate, Probe } from '../core/backend/candidate';
import { firstVisibleGpu, fromProc, gpuChoiceProblem, parseNvidiaSmi } from '../core/backend/nvidia';

interface FakeSpec {
  probe: Probe;
  /** Throws this from start() (a backend that probes fine but fails to initialise). */
  startError?: string;
}

/** FAKE candidates: each records how often it was probed and started. */
function fakeCandidates(specs: Partial<Record<BackendName, FakeSpec>>) {
  const probes: Record<string, number> = {};
  const starts: string[] = [];
  const make = (name: BackendName): Candidate => ({
    name,
    async probe() {
      probes[name] = (probes[name] ?? 0) + 1;
      return specs[name]?.probe ?? { ok: false, reason: `FAKE ${name} is absent` };
    },
    async start(): Promise<BackendInfo> {
      starts.push(name);
      if (specs[name]?.startError) throw new Error(specs[name]!.startError);
      const probe = specs[name]?.probe;
      const onGpu = probe?.ok && probe.onGpu;
      return {
        name,
        detail: `FAKE ${name}${onGpu ? ' on FAKE GPU 0' : ''}`,
        ...(onGpu && { gpu: 'FAKE GPU 0' }),
      };
    },
  });
  const candidates: Candidates = {
    tensorflow: make('tensorflow'),
    webgpu: make('webgpu'),
    wasm: make('wasm'),
    cpu: make('cpu'),
  };
  return { candidates, probes, starts };
}

const wasmOk: FakeSpec = { probe: { ok: true } };
const cpuOk: FakeSpec = { probe: { ok: true } };
const webgpuOk: FakeSpec = { probe: { ok: true } };
const tfOnGpu: FakeSpec = { probe: { ok: true, onGpu: true } };
const tfOnCpu: FakeSpec = {
  probe: { ok: true, onGpu: false, cpuOnlyBecause: 'TensorFlow 2.18.1 (CPU build) sees no GPU' },
};

async function choose(specs: Partial<Record<BackendName, FakeSpec>>) {
  const fake = fakeCandidates(specs);
  const lines: string[] = [];
  const info = await startFastest((l) => lines.push(l), fake.candidates);
  return { info, lines, probes: fake.probes, starts: fake.starts };
}

describe("'auto' order: tensorflow on GPU, webgpu, tensorflow on CPU, wasm, cpu (FAKE candidates)", () => {
  test('TensorFlow on a GPU wins without even probing WebGPU', async () => {
    const r = await choose({ tensorflow: tfOnGpu, webgpu: webgpuOk, wasm: wasmOk, cpu: cpuOk });
    expect(r.info).toEqual({
      name: 'tensorflow',
      detail: 'FAKE tensorflow on FAKE GPU 0',
      gpu: 'FAKE GPU 0',
    });
    expect(r.lines).toEqual(['backend: tensorflow (FAKE tensorflow on FAKE GPU 0)']);
    expect(r.probes).toEqual({ tensorflow: 1 });
  });

  test('a TensorFlow that sees no GPU yields to WebGPU on a hardware adapter, saying why', async () => {
    const r = await choose({ tensorflow: tfOnCpu, webgpu: webgpuOk, wasm: wasmOk, cpu: cpuOk });
    expect(r.info.name).toBe('webgpu');
    expect(r.lines).toEqual([
      'backend: skipped tensorflow on GPU: TensorFlow 2.18.1 (CPU build) sees no GPU',
      'backend: webgpu (FAKE webgpu)',
    ]);
    expect(r.starts).toEqual(['webgpu']);
  });

  test('without WebGPU, TensorFlow on the CPU comes before wasm; each backend is probed once', async () => {
    const r = await choose({
      tensorflow: tfOnCpu,
      webgpu: { probe: { ok: false, reason: 'Dawn found no GPU adapter' } },
      wasm: wasmOk,
      cpu: cpuOk,
    });
    expect(r.info).toEqual({ name: 'tensorflow', detail: 'FAKE tensorflow' });
    expect(r.lines).toEqual([
      'backend: skipped tensorflow on GPU: TensorFlow 2.18.1 (CPU build) sees no GPU',
      'backend: skipped webgpu: Dawn found no GPU adapter',
      'backend: tensorflow (FAKE tensorflow)',
    ]);
    expect(r.probes).toEqual({ tensorflow: 1, webgpu: 1 });
  });

  test('no TensorFlow and no WebGPU: wasm, with each missing backend named once', async () => {
    const r = await choose({ wasm: wasmOk, cpu: cpuOk });
    expect(r.info.name).toBe('wasm');
    expect(r.lines).toEqual([
      'backend: skipped tensorflow: FAKE tensorflow is absent',
      'backend: skipped webgpu: FAKE webgpu is absent',
      'backend: wasm (FAKE wasm)',
    ]);
    expect(r.probes).toEqual({ tensorflow: 1, webgpu: 1, wasm: 1 });
  });

  test('a backend that fails to start is skipped with its reason and not tried again on a later rung', async () => {
    const r = await choose({
      tensorflow: { ...tfOnCpu, startError: 'FAKE binding crashed\nsecond line' },
      wasm: wasmOk,
      cpu: cpuOk,
    });
    expect(r.info.name).toBe('wasm');
    expect(r.lines).toEqual([
      'backend: skipped tensorflow on GPU: TensorFlow 2.18.1 (CPU build) sees no GPU',
      'backend: skipped webgpu: FAKE webgpu is absent',
      'backend: skipped tensorflow: FAKE binding crashed',
      'backend: wasm (FAKE wasm)',
    ]);
    expect(r.starts).toEqual(['tensorflow', 'wasm']);
  });

  test('with nothing else, the plain cpu backend; with not even that, an error', async () => {
    expect((await choose({ cpu: cpuOk })).info.name).toBe('cpu');
    await expect(choose({})).rejects.toThrow(/^no TF\.js backend could start/);
  });
});

describe('which GPU a process uses', () => {
  // FAKE: what nvidia-smi --query-gpu=index,uuid,name --format=csv,noheader prints on a two-GPU host.
  const fakeSmiOutput =
    '0, GPU-3f1c2a44-aaaa-bbbb-cccc-000000000000, NVIDIA H200\n' +
    '1, GPU-9e0b7d11-aaaa-bbbb-cccc-111111111111, NVIDIA H200\n';
  const gpus = parseNvidiaSmi(fakeSmiOutput);

  test('parses nvidia-smi', () => {
    expect(gpus).toEqual([
      { index: 0, uuid: 'GPU-3f1c2a44-aaaa-bbbb-cccc-000000000000', name: 'NVIDIA H200' },
      { index: 1, uuid: 'GPU-9e0b7d11-aaaa-bbbb-cccc-111111111111', name: 'NVIDIA H200' },
    ]);
    expect(parseNvidiaSmi('')).toEqual([]);
    expect(parseNvidiaSmi('NVIDIA-SMI has failed because it could not communicate with the driver')).toEqual(
      [],
    );
  });

  test("without nvidia-smi, the driver's /proc entries in PCI bus order", () => {
    const proc = mkdtempSync(path.join(os.tmpdir(), 'FAKE-proc-nvidia-gpus-'));
    try {
      for (const [bus, model] of [
        ['0000:c1:00.0', 'NVIDIA H100 80GB HBM3'],
        ['0000:41:00.0', 'NVIDIA A100-SXM4-80GB'],
      ]) {
        mkdirSync(path.join(proc, bus));
        writeFileSync(path.join(proc, bus, 'information'), `Model: \t\t ${model}\nIRQ:   \t\t 145\n`);
      }
      expect(fromProc(proc)).toEqual([
        { index: 0, name: 'NVIDIA A100-SXM4-80GB' },
        { index: 1, name: 'NVIDIA H100 80GB HBM3' },
      ]);
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
    expect(fromProc('/nonexistent/FAKE')).toEqual([]);
  });

  test('CUDA_VISIBLE_DEVICES (what --gpu i sets) names the GPU by index or UUID; unset means GPU 0', () => {
    expect(firstVisibleGpu(gpus, '1')?.index).toBe(1);
    expect(firstVisibleGpu(gpus, '1,0')?.index).toBe(1);
    expect(firstVisibleGpu(gpus, 'GPU-9e0b7d11')?.index).toBe(1);
    expect(firstVisibleGpu(gpus, undefined)?.index).toBe(0);
    expect(firstVisibleGpu(gpus, '7')).toBeUndefined();
  });

  test('--gpu i is refused when the machine lists its GPUs and i is not one of them', () => {
    expect(gpuChoiceProblem(1, gpus)).toBeNull();
    expect(gpuChoiceProblem(2, gpus)).toBe(
      "--gpu 2: this machine's NVIDIA GPUs are 0-1 (NVIDIA H200, NVIDIA H200)",
    );
    expect(gpuChoiceProblem(1, gpus.slice(0, 1))).toBe(
      "--gpu 1: this machine's NVIDIA GPUs are 0 (NVIDIA H200)",
    );
    // No list (no nvidia-smi, no /proc entries) proves nothing: CUDA has the last word.
    expect(gpuChoiceProblem(3, [])).toBeNull();
  });
});
