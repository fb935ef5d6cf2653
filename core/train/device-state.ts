import * as tf from '@tensorflow/tfjs-core';
import { ParamLayout, sizeOf } from '../model/params';
import { OptimizerHyperparams, TrainState, adamStepConstants } from './optimizer';

/**
 * How the state is cut into tensors. 'flat': one tensor per quantity (parameters, Adam moments, EMA) over
 * all parameters, so the update is one short sequence of big kernels, at the price of one concat of the
 * gradients and one split of the new parameters per step. 'per-tensor': one tensor per parameter and
 * quantity, which needs no concat or split but runs the update's kernels once per parameter.
 */
export type DeviceLayout = 'flat' | 'per-tensor';

/** One contiguous run of the flat state that is held as one tensor. */
interface Segment {
  offset: number;
  size: number;
  shape: number[];
}

const QUANTITIES = ['params', 'adamM', 'adamV', 'ema'] as const;

type Moments = Record<(typeof QUANTITIES)[number], tf.Tensor[]>;

/** Gradients summed over micro-batches, already cut into the state's segments, plus the summed loss. */
export interface DeviceGradients {
  segments: tf.Tensor[];
  loss: tf.Scalar;
}

/** An update computed on the device but not yet in effect: the host reads its loss first. */
export interface PendingUpdate {
  gradNorm: tf.Scalar;
  learningRate: number;
  /** Makes the new state current and frees the old one. */
  commit(): void;
  /** Frees the new state; the old one stays current. */
  discard(): void;
}

/**
 * The training state (parameters, Adam moments, EMA) as tensors on the active backend, updated there by
 * one fused sequence of ops, so that a step moves no parameters between host and device. The host sees
 * the state only when asked (checkpoints, samples) and the gradients only when they are all-reduced.
 * The update is the same arithmetic as the JS reference (optimizer.ts) in fp32.
 */
export class DeviceTrainState {
  private readonly segments: Segment[];
  private current: Moments;
  private modelParams: tf.Tensor[] | null = null;

  constructor(
    private readonly layout: ParamLayout,
    host: TrainState,
    readonly kind: DeviceLayout = 'flat',
  ) {
    this.segments =
      kind === 'flat'
        ? [{ offset: 0, size: layout.totalSize, shape: [layout.totalSize] }]
        : layout.specs.map((s, i) => ({ offset: layout.offsets[i], size: sizeOf(s.shape), shape: s.shape }));
    this._step = host.step;
    this.current = this.upload(host);
  }

  private _step: number;

  /** Optimizer steps already applied. */
  get step(): number {
    return this._step;
  }

  /** One tensor per parameter in layout order, shaped for the model; valid until the next commit. */
  paramTensors(): tf.Tensor[] {
    if (this.modelParams) return this.modelParams;
    const params = this.current.params;
    if (this.kind === 'per-tensor') {
      this.modelParams = params;
    } else {
      const specs = this.layout.specs;
      this.modelParams = tf.tidy(() =>
        tf
          .split(
            params[0],
            specs.map((s) => sizeOf(s.shape)),
          )
          .map((t, i) => tf.reshape(t, specs[i].shape)),
      );
    }
    return this.modelParams;
  }

  /** A micro-batch's gradients (one per parameter, layout order) cut like the state, to be summed. */
  segmentsOf(grads: readonly tf.Tensor[]): tf.Tensor[] {
    if (this.kind === 'per-tensor') return grads.map((g) => tf.clone(g));
    return [tf.tidy(() => tf.concat(grads.map((g) => tf.reshape(g, [-1]))))];
  }

  /** Gradients and loss as one host buffer (loss last), the all-reducer's format: one read-back. */
  async download(grads: DeviceGradients): Promise<Float32Array> {
    const flat = tf.tidy(() =>
      tf.concat([...grads.segments.map((g) => tf.reshape(g, [-1])), tf.reshape(grads.loss, [1])]),
    );
    try {
      return (await flat.data()) as Float32Array;
    } finally {
      flat.dispose();
    }
  }

  /** The inverse of download: reduced gradients from the host, cut like the state. */
  gradientsFromHost(flat: Float32Array): tf.Tensor[] {
    return this.segments.map((s) => tensorOf(flat, s));
  }

  /**
   * Global-norm clip, Adam with warmup and EMA over the whole state, computed but not yet current. The
   * gradients are read, not disposed.
   */
  prepareUpdate(grads: readonly tf.Tensor[], h: OptimizerHyperparams): PendingUpdate {
    const c = adamStepConstants(this._step, h);
    const { next, gradNorm } = tf.tidy(() => {
      // 16 passes over the state per step. The clip scale is folded into the moments' (scalar) factors
      // instead of scaling the gradients, and the squared gradients serve both the norm and v.
      const squares = grads.map((g) => tf.square(g));
      const sums = squares.map((g2) => tf.sum(g2));
      // Not addN: WebGPU binds every input of an addN to one shader, past its limit for hundreds of
      // tensors; concat splits long input lists.
      const sumOfSquares =
        sums.length === 1 ? sums[0] : tf.sum(tf.concat(sums.map((x) => tf.reshape(x, [1]))));
      const norm = tf.sqrt(sumOfSquares);
      // tf.clip_by_global_norm: scale by clip / max(norm, clip).
      const scale = tf.div(h.gradClipNorm, tf.maximum(norm, h.gradClipNorm));
      const gradFactor = tf.mul(scale, 1 - c.beta1);
      const squareFactor = tf.mul(tf.square(scale), 1 - c.beta2);
      // p - stepSize m / (sqrt(v) / sqrtBc2 + eps) = p - m / (sqrt(v) / (sqrtBc2 stepSize) + eps / stepSize)
      const rootFactor = 1 / (c.sqrtBiasCorrection2 * c.stepSize);
      const epsilon = c.epsilon / c.stepSize;
      const cur = this.current;
      const out: Moments = { params: [], adamM: [], adamV: [], ema: [] };
      grads.forEach((g, i) => {
        const m = tf.add(tf.mul(cur.adamM[i], c.beta1), tf.mul(g, gradFactor));
        const v = tf.add(tf.mul(cur.adamV[i], c.beta2), tf.mul(squares[i], squareFactor));
        const p = tf.sub(cur.params[i], tf.div(m, tf.add(tf.mul(tf.sqrt(v), rootFactor), epsilon)));
        const e = tf.add(tf.mul(cur.ema[i], c.emaDecay), tf.mul(p, 1 - c.emaDecay));
        out.params.push(p);
        out.adamM.push(m);
        out.adamV.push(v);
        out.ema.push(e);
      });
      return { next: out, gradNorm: norm as tf.Scalar };
    });
    let settled = false;
    const settle = (keep: Moments, drop: Moments) => {
      if (settled) throw new Error('update already committed or discarded');
      settled = true;
      gradNorm.dispose();
      this.disposeModelParams();
      for (const q of QUANTITIES) tf.dispose(drop[q]);
      this.current = keep;
    };
    return {
      gradNorm,
      learningRate: c.learningRate,
      commit: () => {
        settle(next, this.current);
        this._step += 1;
      },
      discard: () => settle(this.current, next),
    };
  }

  /** Copies the state into `into` (whose arrays must have the layout's size) and sets its step. */
  async downloadInto(into: TrainState): Promise<void> {
    for (const q of QUANTITIES) {
      const dst = into[q];
      for (let k = 0; k < this.segments.length; k++) {
        const s = this.segments[k];
        dst.set((await this.current[q][k].data()) as Float32Array, s.offset);
      }
    }
    into.step = this._step;
  }

  dispose(): void {
    this.disposeModelParams();
    for (const q of QUANTITIES) tf.dispose(this.current[q]);
  }

  private disposeModelParams(): void {
    if (this.modelParams && this.modelParams !== this.current.params) tf.dispose(this.modelParams);
    this.modelParams = null;
  }

  private upload(host: TrainState): Moments {
    const out: Moments = { params: [], adamM: [], adamV: [], ema: [] };
    for (const q of QUANTITIES) {
      if (host[q].length !== this.layout.totalSize) {
        throw new Error(`state ${q} has ${host[q].length} values, the model needs ${this.layout.totalSize}`);
      }
      out[q] = this.segments.map((s) => tensorOf(host[q], s));
    }
    return out;
  }
}

/** A copy: some backends (cpu) keep the array they are given, and the host buffer changes later. */
function tensorOf(flat: Float32Array, s: Segment): tf.Tensor {
  return tf.tensor(flat.slice(s.offset, s.offset + s.size), s.shape, 'float32');
}
