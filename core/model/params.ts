import * as tf from '@tensorflow/tfjs-core';
import { Purpose, Rng } from '../rng';

/**
 * How a parameter starts. `fanAvgUniform` is the DDPM reference's default_init: variance scaling with
 * mode 'fan_avg' and a uniform distribution. The reference zero-initialises a block's last layer with
 * scale 1e-10; we use exact zeros ('zeros'), which is what that scale amounts to in fp32 training.
 */
export type ParamInit =
  { kind: 'zeros' } | { kind: 'ones' } | { kind: 'fanAvgUniform'; fanIn: number; fanOut: number };

export interface ParamSpec {
  /** Dotted name, following the PyTorch port of the reference model (e.g. `down.0.block.1.conv1.weight`). */
  name: string;
  /** TF.js layout: conv kernels [kh, kw, in, out], dense [in, out], vectors [n]. */
  shape: number[];
  init: ParamInit;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * Where each parameter lives in one flat fp32 buffer. All-reduce, the optimizer, EMA and checkpoints
 * work on that buffer; the model reads tensors made from slices of it.
 */
export class ParamLayout {
  readonly offsets: number[];
  readonly totalSize: number;
  private readonly indexByName = new Map<string, number>();

  constructor(readonly specs: readonly ParamSpec[]) {
    let offset = 0;
    this.offsets = specs.map((s, i) => {
      if (this.indexByName.has(s.name)) throw new Error(`duplicate parameter name ${s.name}`);
      this.indexByName.set(s.name, i);
      const o = offset;
      offset += sizeOf(s.shape);
      return o;
    });
    this.totalSize = offset;
  }

  indexOf(name: string): number {
    const i = this.indexByName.get(name);
    if (i === undefined) throw new Error(`unknown parameter ${name}`);
    return i;
  }

  view(flat: Float32Array, index: number): Float32Array {
    const size = sizeOf(this.specs[index].shape);
    return flat.subarray(this.offsets[index], this.offsets[index] + size);
  }

  /** Deterministic initial values: each parameter's stream is keyed by (seed, its index). */
  initialize(seed: number): Float32Array {
    const flat = new Float32Array(this.totalSize);
    this.specs.forEach((spec, i) => {
      const out = this.view(flat, i);
      const init = spec.init;
      if (init.kind === 'ones') out.fill(1);
      else if (init.kind === 'fanAvgUniform') {
        const limit = Math.sqrt(3 / ((init.fanIn + init.fanOut) / 2));
        const rng = new Rng([seed, Purpose.Init, i]);
        for (let j = 0; j < out.length; j++) out[j] = (2 * rng.uniform() - 1) * limit;
      }
    });
    return flat;
  }
}

/** Tensors for the model, one per parameter, built from the flat buffer (copies: safe to mutate flat). */
export function tensorsFromFlat(layout: ParamLayout, flat: Float32Array): tf.Tensor[] {
  return layout.specs.map((spec, i) => tf.tensor(layout.view(flat, i).slice(), spec.shape, 'float32'));
}

/** Copies gradient tensors into (or adds them to) a flat buffer in layout order. */
export async function accumulateIntoFlat(
  layout: ParamLayout,
  tensors: readonly tf.Tensor[],
  flat: Float32Array,
  mode: 'set' | 'add',
): Promise<void> {
  for (let i = 0; i < tensors.length; i++) {
    const values = (await tensors[i].data()) as Float32Array;
    const dst = layout.view(flat, i);
    if (values.length !== dst.length) {
      throw new Error(
        `gradient of ${layout.specs[i].name} has ${values.length} values, expected ${dst.length}`,
      );
    }
    if (mode === 'set') dst.set(values);
    else for (let j = 0; j < dst.length; j++) dst[j] += values[j];
  }
}
