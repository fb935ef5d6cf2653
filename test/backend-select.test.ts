/**
 * Backend selection on whatever machine runs the tests: 'auto' must start the first option of AUTO_ORDER
 * that can start here (tfjs-node on a GPU, a real GPU through WebGPU, tfjs-node on the CPU, wasm) and log
 * why each faster one was skipped (backend-auto-order.test.ts covers the order on GPUs this machine lacks); explicit requests start that backend or fail saying why and what is
 * available instead, without disturbing the backend that was active.
 */
import fs from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { AUTO_ORDER, initBackend, listNvidiaGpus, type BackendName } from '../core/backend';
import { nativeBuildPath } from '../core/backend/candidates/tensorflow';

/** Whether a package loads, judged independently of the code under test. */
function loads(name: string): boolean {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- probing an optional package
    require(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Dawn reaches GPUs through the Vulkan loader; without it no adapter can exist. (CI may bring a private
 * loader on LD_LIBRARY_PATH, with lavapipe: infra/lavapipe/install.sh.)
 */
function vulkanLoaderPresent(): boolean {
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter((d) => d !== ''),
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/usr/local/lib',
  ];
  return dirs.some((dir) => fs.existsSync(`${dir}/libvulkan.so.1`));
}

const nativeLoads =
  loads('@tensorflow/tfjs-node-gpu') || loads('@tensorflow/tfjs-node') || loads(nativeBuildPath());
const noGpuPossible = !vulkanLoaderPresent();

async function addsCorrectly(): Promise<void> {
  const sum = tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4]));
  expect(Array.from(await sum.data())).toEqual([4, 6]);
}

describe('initBackend', () => {
  it("'auto' starts the first option in AUTO_ORDER that can start and logs why faster ones were skipped", async () => {
    const lines: string[] = [];
    const info = await initBackend('auto', (line) => lines.push(line));
    expect(tf.getBackend()).toBe(info.name);
    await addsCorrectly();

    expect(lines[lines.length - 1]).toBe(`backend: ${info.name} (${info.detail})`);
    const skipped = lines.slice(0, -1).map((line) => {
      const m = /^backend: skipped (tensorflow on GPU|tensorflow|webgpu|wasm): \S.*$/.exec(line);
      expect(m).not.toBeNull();
      return m![1];
    });
    // Every option before the chosen one in AUTO_ORDER is named, in order (a backend that cannot start
    // at all only once).
    const chosen = AUTO_ORDER.findIndex(
      (rung) => rung.name === info.name && (rung.device !== 'gpu' || info.gpu !== undefined),
    );
    const expected = AUTO_ORDER.slice(0, chosen)
      .map((rung) => (rung.device === 'gpu' && nativeLoads ? 'tensorflow on GPU' : rung.name))
      .filter((name, i, all) => name !== info.name && all.indexOf(name) === i);
    expect(skipped).toEqual(expected);
    // Every faster backend it skipped entirely really is unusable when asked for by name (a software-only
    // GPU adapter is the one thing 'auto' skips that an explicit request may still start).
    for (const name of skipped) {
      if (name === 'tensorflow on GPU' || (name === 'webgpu' && !noGpuPossible)) continue;
      await expect(initBackend(name as BackendName)).rejects.toThrow(`backend '${name}' cannot start`);
    }
  });

  it("'auto' on this machine: native TensorFlow where tfjs-node loads (on the CPU without a GPU), never the plain cpu backend", async () => {
    const lines: string[] = [];
    const info = await initBackend('auto', (line) => lines.push(line));
    if (nativeLoads) {
      expect(info).toMatchObject({ name: 'tensorflow', detail: expect.stringMatching(/^tfjs-node/) });
      if (listNvidiaGpus().length === 0) {
        expect(info.gpu).toBeUndefined();
        expect(info.detail).toMatch(/, TF 2\.\d+\.\d+ (CPU|CUDA) build, on CPU$/);
        expect(lines[0]).toMatch(
          /^backend: skipped tensorflow on GPU: TensorFlow 2\.\d+\.\d+ \((CPU|CUDA) build\) sees no GPU$/,
        );
      }
    } else if (noGpuPossible) {
      expect(info.name).toBe('wasm');
    } else {
      expect(['webgpu', 'wasm']).toContain(info.name);
    }
  });

  it("explicit 'cpu' starts the cpu backend and logs the choice", async () => {
    const lines: string[] = [];
    const info = await initBackend('cpu', (line) => lines.push(line));
    expect(info.name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(lines).toEqual([`backend: cpu (${info.detail}), as requested`]);
    await addsCorrectly();
  });

  it("explicit 'wasm' starts wasm with the training kernels, and a second call is harmless", async () => {
    const first = await initBackend('wasm');
    expect(first).toEqual({
      name: 'wasm',
      detail: expect.stringMatching(/^wasm (SIMD|no SIMD), \d+ threads?, /),
    });
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
    const second = await initBackend('wasm');
    expect(second).toEqual(first);
    expect(tf.getBackend()).toBe('wasm');
    // A transposed matMul runs through our BatchMatMul, which calls the built-in one it replaced.
    const product = tf.matMul(
      tf.tensor2d([1, 2, 3, 4], [2, 2]),
      tf.tensor2d([1, 0, 1, 1], [2, 2]),
      true,
      false,
    );
    expect(Array.from(await product.data())).toEqual([4, 3, 6, 4]);
  });

  it('an unknown backend name is rejected with the valid names and what is available here', async () => {
    await initBackend('cpu');
    await expect(initBackend('cuda' as BackendName)).rejects.toThrow(
      /^unknown backend 'cuda': use auto or one of tensorflow, webgpu, wasm, cpu \(available here: .*wasm, cpu\)$/,
    );
    expect(tf.getBackend()).toBe('cpu');
  });

  // Whichever this machine has, explicit 'tensorflow' must either start it or say exactly why not.
  it("explicit 'tensorflow' starts tfjs-node when it loads, and otherwise says why", async () => {
    if (nativeLoads) {
      const info = await initBackend('tensorflow');
      expect(info.name).toBe('tensorflow');
      expect(tf.getBackend()).toBe('tensorflow');
      await addsCorrectly();
    } else {
      await expect(initBackend('tensorflow')).rejects.toThrow(
        /^backend 'tensorflow' cannot start: @tensorflow\/tfjs-node-gpu .*; @tensorflow\/tfjs-node .*; available here: .*wasm, cpu$/,
      );
    }
  });

  it("explicit 'webgpu' starts when a GPU adapter exists, and otherwise fails with the reason, leaving the active backend alone", async () => {
    await initBackend('wasm');
    const outcome = await initBackend('webgpu').then(
      (info) => ({ info, error: null }),
      (err: Error) => ({ info: null, error: err }),
    );
    if (noGpuPossible) expect(outcome.error).not.toBeNull();
    if (outcome.error) {
      expect(outcome.error.message).toMatch(
        /^backend 'webgpu' cannot start: \S.*; available here: (tensorflow, )?wasm, cpu$/,
      );
      expect(outcome.error.message.split('\n')).toHaveLength(1);
      expect(tf.getBackend()).toBe('wasm');
    } else {
      expect(outcome.info?.name).toBe('webgpu');
    }
    await addsCorrectly();
  });
});
