import * as tf from '@tensorflow/tfjs-core';
import { UNetConfig } from './config';
import {
  conv1x1,
  conv2d,
  dense,
  groupNorm,
  groupNormSilu,
  ParamLookup,
  selfAttention,
  silu,
  timestepEmbedding,
  upsampleNearest2x,
} from './layers';
import { ParamSpec } from './params';

/**
 * The DDPM U-Net (Ho et al. 2020, Appendix B; the reference `diffusion_tf/models/unet.py`), read top to
 * bottom: the architecture is written once as a list of steps, from which both the parameter list and
 * the forward pass are derived, so the two cannot disagree.
 */
export type UNetStep =
  | { op: 'res'; name: string; cin: number; cout: number; concatSkip: boolean }
  | { op: 'attn'; name: string; c: number }
  | { op: 'downsample'; name: string; c: number }
  | { op: 'upsample'; name: string; c: number }
  | { op: 'pushSkip' };

export function unetSteps(cfg: UNetConfig): UNetStep[] {
  const steps: UNetStep[] = [{ op: 'pushSkip' }]; // the output of conv_in is the first skip
  const levels = cfg.chMult.length;
  const skipChannels: number[] = [cfg.ch];
  let c = cfg.ch;
  let resolution = cfg.imageSize;
  for (let level = 0; level < levels; level++) {
    const cout = cfg.ch * cfg.chMult[level];
    for (let i = 0; i < cfg.numResBlocks; i++) {
      steps.push({ op: 'res', name: `down.${level}.block.${i}`, cin: c, cout, concatSkip: false });
      c = cout;
      if (cfg.attnResolutions.includes(resolution))
        steps.push({ op: 'attn', name: `down.${level}.attn.${i}`, c });
      steps.push({ op: 'pushSkip' });
      skipChannels.push(c);
    }
    if (level !== levels - 1) {
      steps.push({ op: 'downsample', name: `down.${level}.downsample.conv`, c });
      steps.push({ op: 'pushSkip' });
      skipChannels.push(c);
      resolution /= 2;
    }
  }
  steps.push({ op: 'res', name: 'mid.block_1', cin: c, cout: c, concatSkip: false });
  steps.push({ op: 'attn', name: 'mid.attn_1', c });
  steps.push({ op: 'res', name: 'mid.block_2', cin: c, cout: c, concatSkip: false });
  for (let level = levels - 1; level >= 0; level--) {
    const cout = cfg.ch * cfg.chMult[level];
    for (let i = 0; i < cfg.numResBlocks + 1; i++) {
      const skip = skipChannels.pop() as number;
      steps.push({ op: 'res', name: `up.${level}.block.${i}`, cin: c + skip, cout, concatSkip: true });
      c = cout;
      if (cfg.attnResolutions.includes(resolution))
        steps.push({ op: 'attn', name: `up.${level}.attn.${i}`, c });
    }
    if (level !== 0) {
      steps.push({ op: 'upsample', name: `up.${level}.upsample.conv`, c });
      resolution *= 2;
    }
  }
  return steps;
}

function convSpecs(name: string, k: number, cin: number, cout: number, zeroInit = false): ParamSpec[] {
  return [
    {
      name: `${name}.weight`,
      shape: [k, k, cin, cout],
      init: zeroInit
        ? { kind: 'zeros' }
        : { kind: 'fanAvgUniform', fanIn: k * k * cin, fanOut: k * k * cout },
    },
    { name: `${name}.bias`, shape: [cout], init: { kind: 'zeros' } },
  ];
}

function denseSpecs(name: string, cin: number, cout: number): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [cin, cout], init: { kind: 'fanAvgUniform', fanIn: cin, fanOut: cout } },
    { name: `${name}.bias`, shape: [cout], init: { kind: 'zeros' } },
  ];
}

function normSpecs(name: string, c: number): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [c], init: { kind: 'ones' } },
    { name: `${name}.bias`, shape: [c], init: { kind: 'zeros' } },
  ];
}

function stepSpecs(step: UNetStep, tembCh: number): ParamSpec[] {
  switch (step.op) {
    case 'res':
      return [
        ...normSpecs(`${step.name}.norm1`, step.cin),
        ...convSpecs(`${step.name}.conv1`, 3, step.cin, step.cout),
        ...denseSpecs(`${step.name}.temb_proj`, tembCh, step.cout),
        ...normSpecs(`${step.name}.norm2`, step.cout),
        ...convSpecs(`${step.name}.conv2`, 3, step.cout, step.cout, true),
        ...(step.cin !== step.cout ? convSpecs(`${step.name}.nin_shortcut`, 1, step.cin, step.cout) : []),
      ];
    case 'attn':
      return [
        ...normSpecs(`${step.name}.norm`, step.c),
        ...convSpecs(`${step.name}.q`, 1, step.c, step.c),
        ...convSpecs(`${step.name}.k`, 1, step.c, step.c),
        ...convSpecs(`${step.name}.v`, 1, step.c, step.c),
        ...convSpecs(`${step.name}.proj_out`, 1, step.c, step.c, true),
      ];
    case 'downsample':
    case 'upsample':
      return convSpecs(step.name, 3, step.c, step.c);
    case 'pushSkip':
      return [];
  }
}

export function unetParamSpecs(cfg: UNetConfig): ParamSpec[] {
  const tembCh = cfg.ch * 4;
  // The up path ends at the first level's width, which the output layers normalise and project.
  const outCh = cfg.ch * cfg.chMult[0];
  return [
    ...denseSpecs('temb.dense.0', cfg.ch, tembCh),
    ...denseSpecs('temb.dense.1', tembCh, tembCh),
    ...convSpecs('conv_in', 3, cfg.inChannels, cfg.ch),
    ...unetSteps(cfg).flatMap((s) => stepSpecs(s, tembCh)),
    ...normSpecs('norm_out', outCh),
    ...convSpecs('conv_out', 3, outCh, cfg.inChannels, true),
  ];
}

/**
 * Supplies dropout keep-masks (already scaled by 1/(1-p)) for a given layer, or null for no dropout.
 * Masks come from counter-based streams keyed by global sample index, so they do not depend on how the
 * batch is split into micro-batches or across workers.
 */
export type DropoutMasks = (layer: number, shape: [number, number, number, number]) => tf.Tensor4D | null;

export interface UNetForwardOptions {
  dropoutMasks?: DropoutMasks;
}

function resBlock(
  x: tf.Tensor4D,
  embedding: tf.Tensor2D,
  p: ParamLookup,
  step: Extract<UNetStep, { op: 'res' }>,
  groups: number,
  dropoutMask: tf.Tensor4D | null,
): tf.Tensor4D {
  let h = conv2d(groupNormSilu(x, p, `${step.name}.norm1`, groups), p, `${step.name}.conv1`);
  const tproj = dense(embedding, p, `${step.name}.temb_proj`);
  h = tf.add(h, tf.reshape(tproj, [tproj.shape[0], 1, 1, step.cout]));
  h = groupNormSilu(h, p, `${step.name}.norm2`, groups);
  if (dropoutMask) h = tf.mul(h, dropoutMask);
  h = conv2d(h, p, `${step.name}.conv2`);
  const shortcut = step.cin !== step.cout ? conv1x1(x, p, `${step.name}.nin_shortcut`) : x;
  return tf.add(shortcut, h);
}

function attnBlock(x: tf.Tensor4D, p: ParamLookup, name: string, groups: number): tf.Tensor4D {
  return tf.add(x, selfAttention(groupNorm(x, p, `${name}.norm`, groups), p, name));
}

/** Predicts the noise epsilon in x_t (NHWC, values around [-1, 1]) at integer timesteps t. */
export function unetForward(
  cfg: UNetConfig,
  p: ParamLookup,
  x: tf.Tensor4D,
  t: Int32Array,
  opts: UNetForwardOptions = {},
): tf.Tensor4D {
  if (t.length !== x.shape[0]) throw new Error(`got ${t.length} timesteps for a batch of ${x.shape[0]}`);
  let embedding = timestepEmbedding(t, cfg.ch);
  embedding = silu(dense(silu(dense(embedding, p, 'temb.dense.0')), p, 'temb.dense.1'));
  // The reference applies SiLU to temb once more inside every block before temb_proj; doing it once here
  // is the same computation.
  let h = conv2d(x, p, 'conv_in');
  const skips: tf.Tensor4D[] = [];
  let dropoutLayer = 0;
  for (const step of unetSteps(cfg)) {
    switch (step.op) {
      case 'pushSkip':
        skips.push(h);
        break;
      case 'res': {
        const input = step.concatSkip ? tf.concat([h, skips.pop() as tf.Tensor4D], 3) : h;
        const [b, hh, ww] = input.shape;
        const mask =
          cfg.dropout > 0 && opts.dropoutMasks
            ? opts.dropoutMasks(dropoutLayer, [b, hh, ww, step.cout])
            : null;
        dropoutLayer++;
        h = resBlock(input, embedding, p, step, cfg.groups, mask);
        break;
      }
      case 'attn':
        h = attnBlock(h, p, step.name, cfg.groups);
        break;
      case 'downsample':
        h = conv2d(h, p, step.name, 2);
        break;
      case 'upsample':
        h = conv2d(upsampleNearest2x(h), p, step.name);
        break;
    }
  }
  return conv2d(groupNormSilu(h, p, 'norm_out', cfg.groups), p, 'conv_out');
}
