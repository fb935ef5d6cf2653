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
import { TrainState, UpdateStats, applyUpdate, initialTrainState } from './optimizer';

/**
 * Sums the workers' gradient buffers (each already divided by the global batch size) so every worker
 * applies the same update. The buffer's last element carries the worker's share of the loss, so one
 * reduction gives both. Identity for a single worker.
 */
export type GradientReducer = (local: Float32Array) => Promise<Float32Array>;

export const identityReducer: GradientReducer = async (local) => local;

export interface StepResult extends UpdateStats {
  /** The step number after this update (1 after the first). */
  step: number;
  /** Mean L_simple over the global batch. */
  loss: number;
  /** Images this worker pushed through forward + backward. */
  images: number;
  seconds: number;
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
  readonly state: TrainState;
  private readonly order: EpochOrder;
  private readonly reduce: GradientReducer;
  private readonly positions: number[];
  private readonly microBatchSize: number;
  private paramTensors: tf.Tensor[] | null = null;

  constructor(private readonly opts: TrainerOptions) {
    const { config, data } = opts;
    checkDataMatchesModel(config, data);
    this.layout = new ParamLayout(unetParamSpecs(config.model));
    this.schedule = noiseScheduleFor(config.diffusion);
    this.state = opts.state ?? initialTrainState(this.layout.initialize(config.train.seed));
    if (this.state.params.length !== this.layout.totalSize) {
      throw new Error(
        `state has ${this.state.params.length} parameters, the model needs ${this.layout.totalSize}`,
      );
    }
    this.order = new EpochOrder(config.train.seed, data.count);
    this.reduce = opts.reduce ?? identityReducer;
    this.positions = positionsForRank(config.train.batchSize, opts.rank ?? 0, opts.worldSize ?? 1);
    this.microBatchSize = opts.microBatchSize ?? config.train.microBatchSize;
  }

  get config(): RunConfig {
    return this.opts.config;
  }

  /**
   * This worker's gradient of the global-batch loss at the current step (plus its loss share as the last
   * element), accumulated over micro-batches.
   */
  async localGradients(): Promise<Float32Array> {
    const { config, data } = this.opts;
    const step = this.state.step;
    const params = this.currentParamTensors();
    const grads = new Float32Array(this.layout.totalSize + 1);
    const pixelsPerImage = data.height * data.width * data.channels;
    const denominator = pixelsPerImage * config.train.batchSize;
    const randomness = {
      seed: config.train.seed,
      timesteps: this.schedule.numTimesteps,
      randomFlip: config.train.randomFlip,
      batchSize: config.train.batchSize,
    };
    let lossShare = 0;
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
      const { value, grads: g } = tf.tidy(() => {
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
      lossShare += (await value.data())[0];
      await accumulateIntoFlat(this.layout, g, grads, 'add');
      tf.dispose([value, ...g]);
    }
    grads[this.layout.totalSize] = lossShare;
    return grads;
  }

  /** One optimizer step: local gradients, all-reduce, clip, Adam, EMA. */
  async step(): Promise<StepResult> {
    const started = performance.now();
    const local = await this.localGradients().catch((err: unknown) => {
      const oom = asOutOfMemory(err);
      const size = Math.min(this.microBatchSize, this.positions.length);
      throw oom ? new MicroBatchOutOfMemoryError(size, tf.getBackend(), oom.message) : err;
    });
    const reduced = await this.reduce(local);
    if (reduced.length !== local.length) {
      throw new Error(`gradient reduction returned ${reduced.length} values, expected ${local.length}`);
    }
    const loss = reduced[this.layout.totalSize];
    if (!Number.isFinite(loss)) throw new TrainingDivergedError(this.state.step, loss);
    const stats = applyUpdate(this.state, reduced.subarray(0, this.layout.totalSize), this.opts.config.train);
    this.releaseParamTensors();
    return {
      ...stats,
      step: this.state.step,
      loss,
      images: this.positions.length,
      seconds: (performance.now() - started) / 1000,
    };
  }

  /** Frees the tensors cached for the current step; the flat state remains the source of truth. */
  dispose(): void {
    this.releaseParamTensors();
  }

  private currentParamTensors(): tf.Tensor[] {
    if (!this.paramTensors) this.paramTensors = tensorsFromFlat(this.layout, this.state.params);
    return this.paramTensors;
  }

  private releaseParamTensors(): void {
    if (this.paramTensors) tf.dispose(this.paramTensors);
    this.paramTensors = null;
  }
}
