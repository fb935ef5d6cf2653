import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { UNetConfig, UNetConfigSchema } from '../core/model/config';
import { timestepEmbedding } from '../core/model/layers';
import { ParamLayout, tensorsFromFlat } from '../core/model/params';
import { unetForward, unetParamSpecs } from '../core/model/unet';
import { PRESETS } from '../core/presets';
import { Purpose, Rng } from '../core/rng';

const micro: UNetConfig = {
  imageSize: 8,
  inChannels: 3,
  ch: 8,
  chMult: [1, 2],
  numResBlocks: 1,
  attnResolutions: [4],
  dropout: 0,
  groups: 4,
};

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function randomParams(layout: ParamLayout, seed: number): Float32Array {
  // Non-zero everywhere (the zero-initialised output layers would hide most of the network).
  const rng = new Rng([seed, Purpose.Init, 999]);
  return Float32Array.from({ length: layout.totalSize }, () => rng.normal() * 0.2);
}

function forward(cfg: UNetConfig, flat: Float32Array, x: tf.Tensor4D, t: number[]): Float32Array {
  const layout = new ParamLayout(unetParamSpecs(cfg));
  return tf.tidy(() => {
    const ps = tensorsFromFlat(layout, flat);
    const out = unetForward(cfg, (n) => ps[layout.indexOf(n)], x, Int32Array.from(t));
    expect(out.shape).toEqual(x.shape);
    return out.dataSync() as Float32Array;
  });
}

describe('U-Net', () => {
  test('cifar10 preset has the reference parameter count 35,746,307', () => {
    expect(new ParamLayout(unetParamSpecs(PRESETS.cifar10.model)).totalSize).toBe(35_746_307);
  });

  test('presets are valid configurations', () => {
    for (const p of Object.values(PRESETS)) expect(UNetConfigSchema.safeParse(p.model).success).toBe(true);
    expect(UNetConfigSchema.safeParse({ ...micro, groups: 5 }).success).toBe(false);
    expect(UNetConfigSchema.safeParse({ ...micro, imageSize: 6, chMult: [1, 2, 2] }).success).toBe(false);
  });

  test('parameter names are unique and follow the reference naming', () => {
    const names = unetParamSpecs(PRESETS.cifar10.model).map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('down.1.attn.0.q.weight');
    expect(names).toContain('mid.attn_1.proj_out.bias');
    expect(names).toContain('up.3.block.2.nin_shortcut.weight');
    expect(names).not.toContain('down.0.attn.0.q.weight'); // attention only at 16x16
  });

  test('output layers start at zero, so the initial prediction is exactly zero', () => {
    const layout = new ParamLayout(unetParamSpecs(micro));
    const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const out = forward(micro, layout.initialize(3), x, [0, 500]);
    expect(Math.max(...out.map(Math.abs))).toBe(0);
    x.dispose();
  });

  test('initialisation is deterministic in the seed and fan-avg uniform scaled', () => {
    const layout = new ParamLayout(unetParamSpecs(PRESETS.tiny.model));
    const a = layout.initialize(7);
    const same = (x: Float32Array, y: Float32Array) => Buffer.from(x.buffer).equals(Buffer.from(y.buffer));
    expect(same(layout.initialize(7), a)).toBe(true);
    expect(same(layout.initialize(8), a)).toBe(false);
    const i = layout.indexOf('down.0.block.0.conv1.weight');
    const w = layout.view(a, i);
    const limit = Math.sqrt(3 / ((9 * 32 + 9 * 32) / 2));
    expect(Math.max(...w)).toBeLessThanOrEqual(limit);
    expect(Math.max(...w)).toBeGreaterThan(0.9 * limit);
    expect(layout.view(a, layout.indexOf('down.0.block.0.norm1.weight')).every((v) => v === 1)).toBe(true);
  });

  test('prediction depends on the timestep through the sinusoidal embedding', () => {
    const layout = new ParamLayout(unetParamSpecs(micro));
    const flat = randomParams(layout, 1);
    const x = tf.randomNormal([1, 8, 8, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
    const a = forward(micro, flat, x, [10]);
    const b = forward(micro, flat, x, [11]);
    const c = forward(micro, flat, x, [10]);
    expect(c).toEqual(a);
    const diff = a.reduce((s, v, k) => s + Math.abs(v - b[k]), 0) / a.length;
    expect(diff).toBeGreaterThan(1e-4);
    x.dispose();
  });

  test('each sample is processed independently of the rest of the batch', () => {
    const layout = new ParamLayout(unetParamSpecs(micro));
    const flat = randomParams(layout, 2);
    const x = tf.randomNormal([3, 8, 8, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const all = forward(micro, flat, x, [1, 200, 999]);
    const second = tf.slice(x, [1, 0, 0, 0], [1, 8, 8, 3]);
    const alone = forward(micro, flat, second, [200]);
    const per = 8 * 8 * 3;
    for (let k = 0; k < per; k++) expect(alone[k]).toBeCloseTo(all[per + k], 5);
    tf.dispose([x, second]);
  });

  test('timestep embedding matches the closed form', () => {
    const emb = timestepEmbedding(Int32Array.from([0, 3, 999]), 8);
    const v = emb.dataSync();
    const f = (k: number) => Math.exp((-Math.log(10000) * k) / 3);
    for (const [row, t] of [0, 3, 999].entries()) {
      for (let k = 0; k < 4; k++) {
        expect(v[row * 8 + k]).toBeCloseTo(Math.sin(t * f(k)), 5);
        expect(v[row * 8 + 4 + k]).toBeCloseTo(Math.cos(t * f(k)), 5);
      }
    }
    emb.dispose();
  });

  test('forward pass leaks no tensors', () => {
    const layout = new ParamLayout(unetParamSpecs(micro));
    const flat = randomParams(layout, 4);
    const x = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    forward(micro, flat, x, [5]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});

/**
 * The parameter count of the reference PyTorch port of the DDPM U-Net (pesser/pytorch_diffusion
 * `Model.__init__`, itself a port of diffusion_tf/models/unet.py), written the way that constructor builds
 * its modules (`in_ch_mult`, `skip_in`), not the way unetSteps does, so the two can disagree.
 */
function referenceParamCount(cfg: UNetConfig): number {
  const conv = (cin: number, cout: number, k: number) => cin * cout * k * k + cout;
  const linear = (cin: number, cout: number) => cin * cout + cout;
  const norm = (c: number) => 2 * c;
  const tembCh = cfg.ch * 4;
  const resnet = (cin: number, cout: number) =>
    norm(cin) +
    conv(cin, cout, 3) +
    linear(tembCh, cout) +
    norm(cout) +
    conv(cout, cout, 3) +
    (cin !== cout ? conv(cin, cout, 1) : 0);
  const attn = (c: number) => norm(c) + 4 * conv(c, c, 1);
  const { ch, chMult, numResBlocks } = cfg;
  const inChMult = [1, ...chMult];
  let n = linear(ch, tembCh) + linear(tembCh, tembCh) + conv(cfg.inChannels, ch, 3);
  let res = cfg.imageSize;
  let blockIn = ch;
  for (let level = 0; level < chMult.length; level++) {
    blockIn = ch * inChMult[level];
    const blockOut = ch * chMult[level];
    for (let i = 0; i < numResBlocks; i++) {
      n += resnet(blockIn, blockOut);
      blockIn = blockOut;
      if (cfg.attnResolutions.includes(res)) n += attn(blockIn);
    }
    if (level !== chMult.length - 1) {
      n += conv(blockIn, blockIn, 3);
      res /= 2;
    }
  }
  n += resnet(blockIn, blockIn) + attn(blockIn) + resnet(blockIn, blockIn);
  for (let level = chMult.length - 1; level >= 0; level--) {
    const blockOut = ch * chMult[level];
    for (let i = 0; i < numResBlocks + 1; i++) {
      const skipIn = i === numResBlocks ? ch * inChMult[level] : ch * chMult[level];
      n += resnet(blockIn + skipIn, blockOut);
      blockIn = blockOut;
      if (cfg.attnResolutions.includes(res)) n += attn(blockIn);
    }
    if (level !== 0) {
      n += conv(blockIn, blockIn, 3);
      res *= 2;
    }
  }
  // The up path ends at ch * chMult[0] channels: that is what the output layers see.
  return n + norm(blockIn) + conv(blockIn, cfg.inChannels, 3);
}

describe('U-Net whose first level widens the channels (chMult[0] > 1)', () => {
  const wide: UNetConfig[] = [
    { ...micro, chMult: [2, 2] },
    { ...micro, ch: 4, chMult: [3, 1, 2], numResBlocks: 2, attnResolutions: [8, 2], groups: 2 },
    { ...PRESETS.cifar10.model, chMult: [2, 2, 2, 2] },
  ];

  test('the reference count reproduces the cifar10 preset (35,746,307)', () => {
    expect(referenceParamCount(PRESETS.cifar10.model)).toBe(35_746_307);
  });

  test.each(wide.map((cfg) => [cfg.chMult.join(','), cfg] as const))(
    'chMult [%s]: parameter count and output layer shapes match the reference',
    (_, cfg) => {
      const specs = unetParamSpecs(cfg);
      expect(new ParamLayout(specs).totalSize).toBe(referenceParamCount(cfg));
      const shape = (name: string) => specs.find((s) => s.name === name)?.shape;
      const last = cfg.ch * cfg.chMult[0];
      expect(shape('norm_out.weight')).toEqual([last]);
      expect(shape('conv_out.weight')).toEqual([3, 3, last, cfg.inChannels]);
    },
  );

  test.each(wide.slice(0, 2).map((cfg) => [cfg.chMult.join(','), cfg] as const))(
    'chMult [%s]: the forward pass predicts one value per input value, each sample on its own',
    (_, cfg) => {
      const layout = new ParamLayout(unetParamSpecs(cfg));
      const flat = randomParams(layout, 5);
      const x = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', 6) as tf.Tensor4D;
      const both = forward(cfg, flat, x, [3, 70]);
      expect(both.every(Number.isFinite)).toBe(true);
      expect(Math.max(...both.map(Math.abs))).toBeGreaterThan(0);
      const first = tf.slice(x, [0, 0, 0, 0], [1, 8, 8, 3]);
      const alone = forward(cfg, flat, first, [3]);
      for (let k = 0; k < alone.length; k++) expect(alone[k]).toBeCloseTo(both[k], 4);
      // Freshly initialised, the zero output layer predicts exactly zero, as for any configuration.
      expect(Math.max(...forward(cfg, layout.initialize(1), x, [3, 70]).map(Math.abs))).toBe(0);
      tf.dispose([x, first]);
    },
  );
});

test('nearest upsampling repeats each pixel 2x2', () => {
  const { upsampleNearest2x } = jest.requireActual(
    '../core/model/layers',
  ) as typeof import('../core/model/layers');
  const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 2, 2]);
  const y = upsampleNearest2x(x);
  expect(y.shape).toEqual([1, 4, 4, 2]);
  const v = y.arraySync()[0];
  expect(v[0][0]).toEqual([1, 2]);
  expect(v[1][1]).toEqual([1, 2]);
  expect(v[0][2]).toEqual([3, 4]);
  expect(v[3][3]).toEqual([7, 8]);
  expect(v[2][1]).toEqual([5, 6]);
  tf.dispose([x, y]);
});
