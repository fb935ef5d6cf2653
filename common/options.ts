import { Command, InvalidArgumentError } from 'commander';
import { RunConfig, RunConfigSchema, getPreset } from '../core/presets';

/**
 * A whole decimal number, as a person types one: "1e-3junk" (which parseFloat reads as 0.001), "",
 * " 5" and "0x10" (which Number() reads as 0, 5 and 16) are refused, not half-read.
 */
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function strictNumber(value: string, expected: string, ok: (n: number) => boolean): number {
  const n = DECIMAL.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n) || !ok(n)) throw new InvalidArgumentError(`expected ${expected}, got '${value}'`);
  return n;
}

export function positiveInt(value: string): number {
  return strictNumber(value, 'a positive integer', (n) => Number.isInteger(n) && n > 0);
}

export function nonNegativeInt(value: string): number {
  return strictNumber(value, 'a non-negative integer', (n) => Number.isInteger(n) && n >= 0);
}

export function positiveNumber(value: string): number {
  return strictNumber(value, 'a positive number', (n) => n > 0);
}

/** The options that override a preset's training settings (see resolveRunConfig). */
export function addConfigOverrideOptions(command: Command): Command {
  return command
    .option('--steps <n>', 'total optimizer steps (overrides the preset)', positiveInt)
    .option('--batch <n>', 'global batch size (overrides the preset)', positiveInt)
    .option(
      '--micro-batch <n>',
      'images per forward/backward pass; the batch is accumulated over these',
      positiveInt,
    )
    .option(
      '--seed <n>',
      'run seed: data order, timesteps, noise, dropout and init derive from it',
      nonNegativeInt,
    )
    .option('--lr <x>', 'peak learning rate (overrides the preset)', positiveNumber);
}

export interface ConfigOverrides {
  steps?: number;
  batch?: number;
  microBatch?: number;
  seed?: number;
  lr?: number;
}

/** A preset with the command line's overrides applied, validated as a whole (errors name the field). */
export function resolveRunConfig(preset: string, o: ConfigOverrides): RunConfig {
  const base = getPreset(preset);
  const train = { ...base.train };
  if (o.steps !== undefined) train.totalSteps = o.steps;
  if (o.batch !== undefined) train.batchSize = o.batch;
  if (o.microBatch !== undefined) train.microBatchSize = o.microBatch;
  if (o.seed !== undefined) train.seed = o.seed;
  if (o.lr !== undefined) train.learningRate = o.lr;
  const parsed = RunConfigSchema.safeParse({ ...base, train });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid configuration: ${issue.path.join('.')}: ${issue.message}`);
  }
  return parsed.data;
}

export function defaultRunId(preset: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${preset}-${stamp}`;
}
