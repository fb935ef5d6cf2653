import * as tf from '@tensorflow/tfjs-core';
import { asOutOfMemory } from '../backend/out-of-memory';
import { InvalidInputError, MicroBatchOutOfMemoryError, TrainingDivergedError } from '../errors';
import { registerGradients } from '../tf-gradients';
import { qSample } from '../diffusion/forward';
import { NoiseSchedule } from '../diffusion/schedule';
import { ParamLayout, accumulateIntoFlat, tensorsFromFlat } from '../model/params';
import { unetForward, unetParamSpecs } from '../model/unet';
import type { DiffusionConfig, RunConfig } from '../presets';
import { EpochOrder, ImageSource, buildMicroBatch, chunk, dropoutMasksFor, positionsForRank } from './batch';
import { DeviceGradients, DeviceLayout, DeviceTrainState } from './device-state';
import { TrainState, UpdateStats, applyUpdate, initialTrainState } from './optimizer';

/**
 * Sums the workers' gradient buffers (each already divided by the global batch size) so every worker
 * applies the same update. The buffer's last element carries the worker's share of the loss, so one
 * reduction gives both. Identity for a single worker.
 */
export type GradientReducer = (local: Float32Array) => Promise<Float32Array>;

export const identityReducer: GradientReducer = async (local) => local;

/** Where a step's wall time went, in seconds. */
export interface StepPhases {
  /** Batch assembly, upload, forward and backward passes over all micro-batches. */
  forwardBackward: number;
  /** Gradients to the host: for the all-reduce, or for the host optimizer. */
  gradientReadBack: number;
  allReduce: number;
  /** Reduced gradients back to the device if need be, clip + Adam + EMA, reading loss and norm. */
  update: number;
}

export interface StepResult extends UpdateStats {
  /** The step number after this update (1 after the first). */
  step: number;
  /** Mean L_simple over the global batch. */
  loss: number;
  /** Images this worker pushed through forward + backward. */
  images: number;
  seconds: number;
  /**
   * The split of `seconds`. On backends that queue work (webgpu) a phase's kernels may finish in a later
   * phase unless the trainer was made with syncPhases.
   */
  phases: StepPhases;
}

/**
 * Where the optimizer state lives. 'device': tensors on the backend, one fused update per step
 * (device-state.ts). 'host': flat JS buffers and the JS reference update (optimizer.ts), which needs every
 * gradient on the host each step.
 */
export type OptimizerPlacement = 'device' | 'host';

/**
 * Where the state lives unless a trainer is told: on the device for the native TensorFlow and WebGPU
 * backends, where moving the parameters and gradients through JS each step costs more than the update.
 * In JS for cpu, whose tensors are JS arrays already, and for wasm, whose tensors share one 4 GiB heap
 * with the activations (the cifar10 U-Net's state and the update's temporaries would take over 1 GB of
 * it) and whose single thread runs the one-pass JS loop as fast as the update's ~20 passes.
 */
export function defaultOptimizerPlacement(backend: string = tf.getBackend()): OptimizerPlacement {
  return backend === 'tensorflow' || backend === 'webgpu' ? 'device' : 'host';
}

export interface TrainerOptions {
  config: RunConfig;
  data: ImageSource;
  /** Starts from a checkpoint's state, or from the seed's initialisation when omitted. */
  state?: TrainState;
  reduce?: GradientReducer;
  rank?: number;
  worldSize?: number;
  /** Overrides config.train.microBatchSize, e.g. to fit a backend's memory. */
  microBatchSize?: number;
  /** Default: defaultOptimizerPlacement() of the active backend. Same placement, same bits. */
  optimizer?: OptimizerPlacement;
  /** How the device state is cut into tensors (device placement only); default 'flat'. */
  deviceLayout?: DeviceLayout;
  /** Wait for each phase's kernels before timing the next (benchmarks; costs a sync per phase). */
  syncPhases?: boolean;
  /**
   * Awaited before every micro-batch: a chance to report liveness and yield the event loop during long
   * steps, or to abort the step by throwing (the state stays at the last completed step).
   */
  beforeMicroBatch?: () => Promise<void>;
}

registerGradients();

export function noiseScheduleFor(d: DiffusionConfig): NoiseSchedule {
  return d.schedule === 'linear'
    ? NoiseSchedule.fromConfig({ kind: 'linear', T: d.timesteps, betaStart: d.betaStart, betaEnd: d.betaEnd })
    : NoiseSchedule.fromConfig({ kind: 'cosine', T: d.timesteps });
}

export function checkDataMatchesModel(config: RunConfig, data: ImageSource): void {
  const m = config.model;
  if (data.height !== m.imageSize || data.width !== m.imageSize || data.channels !== m.inChannels) {
    throw new InvalidInputError(
      `dataset images are ${data.height}x${data.width}x${data.channels} but preset '${config.preset}' expects ` +
        `${m.imageSize}x${m.imageSize}x${m.inChannels}`,
    );
  }
}

export class Trainer {
  readonly layout: ParamLayout;
  readonly schedule: NoiseSchedule;
  readonly placement: OptimizerPlacement;
  /** The host copy: current when the state lives on the host or after hostState(). */
  private readonly host: TrainState;
  private hostIsCurrent = true;
  private device: DeviceTrainState | null = null;
  private readonly order: EpochOrder;
  private readonly reduce: GradientReducer | null;
  private readonly positions: number[];
  private readonly microBatchSize: number;
  private hostParamTensors: tf.Tensor[] | null = null;

  constructor(private readonly opts: TrainerOptions) {
    const { config, data } = opts;
    checkDataMatchesModel(config, data);
    this.layout = new ParamLayout(unetParamSpecs(config.model));
    this.schedule = noiseScheduleFor(config.diffusion);
    this.host = opts.state ?? initialTrainState(this.layout.initialize(config.train.seed));
    for (const key of ['params', 'adamM', 'adamV', 'ema'] as const) {
      if (this.host[key].length !== this.layout.totalSize) {
        throw new Error(
          `state ${key} has ${this.host[key].length} values, the model needs ${this.layout.totalSize}`,
        );
      }
    }
    this.order = new EpochOrder(config.train.seed, data.count);
    this.reduce = opts.reduce ?? null;
    this.positions = positionsForRank(config.train.batchSize, opts.rank ?? 0, opts.worldSize ?? 1);
    this.microBatchSize = opts.microBatchSize ?? config.train.microBatchSize;
    this.placement = opts.optimizer ?? defaultOptimizerPlacement();
  }

  get config(): RunConfig {
    return this.opts.config;
  }

  /** Optimizer steps applied so far. */
  get currentStep(): number {
    return this.device ? this.device.step : this.host.step;
  }

  /**
   * The whole state on the host, copied from the device when it lives there (checkpoints, samples). The
   * arrays are the trainer's own: read them before the next step(), which may change them.
   */
  async hostState(): Promise<TrainState> {
    if (!this.hostIsCurrent) {
      if (!this.device) throw new Error('the trainer was disposed before its state was read back');
      await this.device.downloadInto(this.host);
      this.hostIsCurrent = true;
    }
    return this.host;
  }

  /**
   * This worker's gradient of the global-batch loss at the current step (plus its loss share as the last
   * element), accumulated over micro-batches.
   */
  async localGradients(): Promise<Float32Array> {
    if (this.placement === 'host') return this.hostGradients();
    const grads = await this.deviceGradients();
    try {
      return await this.deviceState().download(grads);
    } finally {
      tf.dispose([...grads.segments, grads.loss]);
    }
  }

  /** One optimizer step: local gradients, all-reduce, clip, Adam, EMA. */
  async step(): Promise<StepResult> {
    return this.placement === 'host' ? this.hostStep() : this.deviceStep();
  }

  /** Frees the backend's copies; the state is lost unless hostState() was read since the last step. */
  dispose(): void {
    this.releaseHostParamTensors();
    this.device?.dispose();
    this.device = null;
  }

  private async hostStep(): Promise<StepResult> {
    const started = performance.now();
    const phases: StepPhases = { forwardBackward: 0, gradientReadBack: 0, allReduce: 0, update: 0 };
    const local = await this.hostGradients(phases).catch((err: unknown) => this.outOfMemoryAsMicroBatch(err));
    const t0 = performance.now();
    const reduced = this.reduce ? await this.reduce(local) : local;
    phases.allReduce = (performance.now() - t0) / 1000;
    if (reduced.length !== local.length) {
      throw new Error(`gradient reduction returned ${reduced.length} values, expected ${local.length}`);
    }
    const t1 = performance.now();
    const loss = reduced[this.layout.totalSize];
    this.checkFinite(loss);
    const stats = applyUpdate(this.host, reduced.subarray(0, this.layout.totalSize), this.opts.config.train);
    this.releaseHostParamTensors();
    phases.update = (performance.now() - t1) / 1000;
    return this.result(stats, loss, started, phases);
  }

  private async deviceStep(): Promise<StepResult> {
    const started = performance.now();
    const phases: StepPhases = { forwardBackward: 0, gradientReadBack: 0, allReduce: 0, update: 0 };
    const device = this.deviceState();
    const local = await this.deviceGradients(phases).catch((err: unknown) =>
      this.outOfMemoryAsMicroBatch(err),
    );
    let grads = local.segments;
    let lossTensor = local.loss;
    const owned: tf.Tensor[] = [...local.segments, local.loss];
    try {
      if (this.reduce) {
        const t0 = performance.now();
        const host = await device.download(local);
        const t1 = performance.now();
        const reduced = await this.reduce(host);
        const t2 = performance.now();
        phases.gradientReadBack = (t1 - t0) / 1000;
        phases.allReduce = (t2 - t1) / 1000;
        if (reduced.length !== host.length) {
          throw new Error(`gradient reduction returned ${reduced.length} values, expected ${host.length}`);
        }
        grads = device.gradientsFromHost(reduced);
        lossTensor = tf.scalar(reduced[this.layout.totalSize]);
        owned.push(...grads, lossTensor);
      }
      const t3 = performance.now();
      const pending = device.prepareUpdate(grads, this.opts.config.train);
      // The one read-back of a step: loss and norm together, before the new state takes effect.
      const [lossValue, normValue] = await Promise.all([lossTensor.data(), pending.gradNorm.data()]);
      const loss = lossValue[0];
      const gradNorm = normValue[0];
      if (!Number.isFinite(loss)) pending.discard();
      this.checkFinite(loss);
      pending.commit();
      this.hostIsCurrent = false;
      phases.update = (performance.now() - t3) / 1000;
      const clipped = gradNorm > this.opts.config.train.gradClipNorm;
      return this.result({ learningRate: pending.learningRate, gradNorm, clipped }, loss, started, phases);
    } finally {
      tf.dispose(owned);
    }
  }

  private result(stats: UpdateStats, loss: number, started: number, phases: StepPhases): StepResult {
    return {
      ...stats,
      step: this.currentStep,
      loss,
      images: this.positions.length,
      seconds: (performance.now() - started) / 1000,
      phases,
    };
  }

  private checkFinite(loss: number): void {
    if (!Number.isFinite(loss)) throw new TrainingDivergedError(this.currentStep, loss);
  }

  /** A failed allocation during forward + backward says which micro-batch size did not fit. */
  private outOfMemoryAsMicroBatch(err: unknown): never {
    const oom = asOutOfMemory(err);
    const size = Math.min(this.microBatchSize, this.positions.length);
    throw oom ? new MicroBatchOutOfMemoryError(size, tf.getBackend(), oom.message) : err;
  }

  /** Runs forward + backward over this worker's micro-batches, handing each one's outputs to `take`. */
  private async forEachMicroBatch(
    params: tf.Tensor[],
    take: (loss: tf.Scalar, grads: tf.Tensor[]) => Promise<void>,
  ): Promise<void> {
    const { config, data } = this.opts;
    const step = this.currentStep;
    const pixelsPerImage = data.height * data.width * data.channels;
    const denominator = pixelsPerImage * config.train.batchSize;
    const randomness = {
      seed: config.train.seed,
      timesteps: this.schedule.numTimesteps,
      randomFlip: config.train.randomFlip,
      batchSize: config.train.batchSize,
    };
    for (const positions of chunk(this.positions, this.microBatchSize)) {
      await this.opts.beforeMicroBatch?.();
      const mb = buildMicroBatch(data, this.order, randomness, step, positions);
      const shape: [number, number, number, number] = [
        positions.length,
        data.height,
        data.width,
        data.channels,
      ];
      const masks = dropoutMasksFor(config.train.seed, step, positions, config.model.dropout);
      const { value, grads } = tf.tidy(() => {
        const x0 = tf.tensor4d(mb.x0, shape);
        const noise = tf.tensor4d(mb.noise, shape);
        const lossFn = (...ps: tf.Tensor[]) => {
          const lookup = (name: string) => ps[this.layout.indexOf(name)];
          const xt = qSample(this.schedule, x0, mb.t, noise);
          const eps = unetForward(config.model, lookup, xt, mb.t, { dropoutMasks: masks });
          return tf.div(tf.sum(tf.squaredDifference(eps, noise)), denominator) as tf.Scalar;
        };
        return tf.valueAndGrads(lossFn)(params);
      });
      try {
        await take(value, grads);
      } finally {
        tf.dispose([value, ...grads]);
      }
    }
  }

  private async hostGradients(phases?: StepPhases): Promise<Float32Array> {
    const params = this.currentHostParamTensors();
    const grads = new Float32Array(this.layout.totalSize + 1);
    let lossShare = 0;
    let mark = performance.now();
    await this.forEachMicroBatch(params, async (value, g) => {
      const t0 = performance.now();
      lossShare += (await value.data())[0];
      await accumulateIntoFlat(this.layout, g, grads, 'add');
      const t1 = performance.now();
      if (phases) {
        phases.forwardBackward += (t0 - mark) / 1000;
        phases.gradientReadBack += (t1 - t0) / 1000;
      }
      mark = t1;
    });
    grads[this.layout.totalSize] = lossShare;
    return grads;
  }

  /** Gradients and loss summed over micro-batches, kept on the device. The caller disposes them. */
  private async deviceGradients(phases?: StepPhases): Promise<DeviceGradients> {
    const t0 = performance.now();
    const device = this.deviceState();
    let sum: DeviceGradients | null = null;
    try {
      await this.forEachMicroBatch(device.paramTensors(), async (value, g) => {
        const segments = device.segmentsOf(g);
        if (!sum) {
          sum = { segments, loss: tf.clone(value) };
          return;
        }
        const previous: DeviceGradients = sum;
        sum = tf.tidy(() => ({
          segments: segments.map((s, i) => tf.add(previous.segments[i], s)),
          loss: tf.add(previous.loss, value) as tf.Scalar,
        }));
        tf.dispose([...segments, ...previous.segments, previous.loss]);
      });
    } catch (err) {
      const partial = sum as DeviceGradients | null;
      if (partial) tf.dispose([...partial.segments, partial.loss]);
      throw err;
    }
    if (!sum) throw new Error('this worker has no positions in the batch');
    const result: DeviceGradients = sum;
    if (this.opts.syncPhases) await waitForKernels(result.segments[result.segments.length - 1]);
    if (phases) phases.forwardBackward = (performance.now() - t0) / 1000;
    return result;
  }

  private deviceState(): DeviceTrainState {
    this.device ??= new DeviceTrainState(this.layout, this.host, this.opts.deviceLayout);
    return this.device;
  }

  private currentHostParamTensors(): tf.Tensor[] {
    this.hostParamTensors ??= tensorsFromFlat(this.layout, this.host.params);
    return this.hostParamTensors;
  }

  private releaseHostParamTensors(): void {
    if (this.hostParamTensors) tf.dispose(this.hostParamTensors);
    this.hostParamTensors = null;
  }
}

/** Resolves once the kernels that produce `t` have run: reads one of its values. */
async function waitForKernels(t: tf.Tensor): Promise<void> {
  const one = tf.tidy(() => tf.slice(tf.reshape(t, [-1]), 0, 1));
  await one.data();
  one.dispose();
}
