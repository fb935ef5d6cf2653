import { z } from 'zod';
import { UNetConfigSchema } from './model/config';

/** How a run trains: the paper's CIFAR-10 settings unless a preset says otherwise. */
export const TrainConfigSchema = z
  .object({
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1),
    /** Global batch per optimizer step, whatever the number of workers or micro-batches. */
    batchSize: z.number().int().positive(),
    /** Largest batch pushed through the model at once; the global batch is accumulated over these. */
    microBatchSize: z.number().int().positive(),
    learningRate: z.number().positive(),
    warmupSteps: z.number().int().min(0),
    gradClipNorm: z.number().positive(),
    emaDecay: z.number().min(0).max(1),
    /** Ramp the EMA decay up over the first steps (core/train/optimizer.ts emaDecayAt); absent means off. */
    emaWarmup: z.boolean().optional(),
    adamBeta1: z.number().min(0).lt(1),
    adamBeta2: z.number().min(0).lt(1),
    adamEpsilon: z.number().positive(),
    randomFlip: z.boolean(),
    totalSteps: z.number().int().positive(),
  })
  .strict();

export const DiffusionConfigSchema = z
  .object({
    schedule: z.enum(['linear', 'cosine']),
    timesteps: z.number().int().min(2),
    betaStart: z.number().positive(),
    betaEnd: z.number().positive(),
    /** Variance of the reverse process: 'fixedlarge' (sigma^2 = beta_t, the paper's CIFAR choice) or 'fixedsmall'. */
    variance: z.enum(['fixedlarge', 'fixedsmall']),
  })
  .strict();

export const RunConfigSchema = z
  .object({
    preset: z.string(),
    model: UNetConfigSchema,
    diffusion: DiffusionConfigSchema,
    train: TrainConfigSchema,
  })
  .strict();

export type TrainConfig = z.infer<typeof TrainConfigSchema>;
export type DiffusionConfig = z.infer<typeof DiffusionConfigSchema>;
export type RunConfig = z.infer<typeof RunConfigSchema>;

const paperDiffusion: DiffusionConfig = {
  schedule: 'linear',
  timesteps: 1000,
  betaStart: 1e-4,
  betaEnd: 0.02,
  variance: 'fixedlarge',
};

const paperTraining: TrainConfig = {
  seed: 0,
  batchSize: 128,
  microBatchSize: 16,
  learningRate: 2e-4,
  warmupSteps: 5000,
  gradClipNorm: 1,
  emaDecay: 0.9999,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEpsilon: 1e-8,
  randomFlip: true,
  totalSteps: 800_000,
};

export const PRESETS = {
  /** Ho et al. 2020, CIFAR-10: 35,746,307 parameters. */
  cifar10: {
    preset: 'cifar10',
    model: {
      imageSize: 32,
      inChannels: 3,
      ch: 128,
      chMult: [1, 2, 2, 2],
      numResBlocks: 2,
      attnResolutions: [16],
      dropout: 0.1,
      groups: 32,
    },
    diffusion: paperDiffusion,
    train: paperTraining,
  },
  /** A smaller U-Net for 28x28 grayscale MNIST. */
  mnist: {
    preset: 'mnist',
    model: {
      imageSize: 28,
      inChannels: 1,
      ch: 64,
      chMult: [1, 2, 2],
      numResBlocks: 2,
      attnResolutions: [14],
      dropout: 0.1,
      groups: 32,
    },
    diffusion: paperDiffusion,
    train: {
      ...paperTraining,
      microBatchSize: 32,
      warmupSteps: 1000,
      emaDecay: 0.999,
      randomFlip: false,
      totalSteps: 50_000,
    },
  },
  /**
   * The quick start's default: MNIST-sized digits (the embedded dataset) that a 2-core CPU turns into
   * recognisable samples within minutes. Tuned in README "The default run".
   */
  digits: {
    preset: 'digits',
    model: {
      imageSize: 28,
      inChannels: 1,
      ch: 32,
      chMult: [1, 2, 2],
      numResBlocks: 1,
      attnResolutions: [7],
      dropout: 0,
      groups: 8,
    },
    diffusion: paperDiffusion,
    train: {
      ...paperTraining,
      // Small batches and many steps: early in training, updates matter more than gradient noise.
      batchSize: 32,
      microBatchSize: 32,
      learningRate: 1e-3,
      warmupSteps: 100,
      emaDecay: 0.995,
      emaWarmup: true,
      randomFlip: false,
      totalSteps: 800,
    },
  },
  /**
   * For CI and smoke runs on a CPU: the same architecture at a size that trains a few hundred steps in
   * minutes on 32x32 RGB data, with a short warmup and a fast EMA so samples change visibly.
   */
  tiny: {
    preset: 'tiny',
    model: {
      imageSize: 32,
      inChannels: 3,
      ch: 32,
      chMult: [1, 2, 2],
      numResBlocks: 1,
      attnResolutions: [8],
      dropout: 0,
      groups: 8,
    },
    diffusion: paperDiffusion,
    train: {
      ...paperTraining,
      batchSize: 32,
      microBatchSize: 32,
      learningRate: 1e-3,
      warmupSteps: 50,
      // A 300-step smoke run needs a short EMA horizon: at 0.99 the EMA still holds 37% of the
      // (zero-output) initial weights at step 100.
      emaDecay: 0.95,
      totalSteps: 300,
    },
  },
} satisfies Record<string, RunConfig>;

export type PresetName = keyof typeof PRESETS;

/** What `start-run` trains when no --preset is given: the digits that ship with the install. */
export const DEFAULT_PRESET: PresetName = 'digits';

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

export function getPreset(name: string): RunConfig {
  if (!(name in PRESETS)) {
    throw new Error(`unknown preset '${name}'; available: ${presetNames().join(', ')}`);
  }
  return structuredClone(PRESETS[name as PresetName]);
}
