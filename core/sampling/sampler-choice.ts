import { AncestralSampler, DdimSampler, NoiseSchedule, Sampler } from '../diffusion';
import { InvalidInputError } from '../errors';
import type { RunConfig } from '../presets';
import { noiseScheduleFor } from '../train/trainer';

/**
 * Which sampler, as plain JSON (it travels in workflow payloads). One sampler object per method, as in
 * diffusers: 'ancestral' is DDPM's Algorithm 2 (`AncestralSampler`, all T steps; users call it `ddpm`),
 * 'ddim' is Song et al.'s (`DdimSampler`, any number of steps).
 */
export interface SamplerChoice {
  kind: 'ancestral' | 'ddim';
  /** DDIM steps (1..T). Ancestral sampling always takes all T steps; a value other than T is an error. */
  steps?: number;
  /** DDIM eta: 0 deterministic (default), 1 DDPM-like noise. Ignored by 'ancestral'. */
  eta?: number;
  /**
   * Clip each predicted x_0 to the data range [-1, 1] before the step (the reference code's
   * clip_denoised). Default true: images live in [-1, 1], and unclipped x_0 estimates early in the chain
   * push samples off it.
   */
  clip?: boolean;
}

/** A choice with every default filled in: what a sample set records. */
export type ResolvedSamplerChoice = Required<SamplerChoice>;

export const DEFAULT_DDIM_STEPS = 50;

/** The names users type (`--sampler ddpm|ddim`) mapped to the kinds above; 'ancestral' is accepted too. */
export const SAMPLER_METHODS = { ddpm: 'ancestral', ancestral: 'ancestral', ddim: 'ddim' } as const;
export type SamplerMethod = keyof typeof SAMPLER_METHODS;

/** Fills in defaults and checks the choice against the run's diffusion schedule. */
export function resolveSamplerChoice(config: RunConfig, choice: SamplerChoice): ResolvedSamplerChoice {
  const T = config.diffusion.timesteps;
  const clip = choice.clip ?? true;
  if (choice.kind === 'ancestral') {
    if (choice.steps !== undefined && choice.steps !== T) {
      throw new InvalidInputError(
        `ddpm (ancestral) sampling takes all ${T} timesteps of this run; use --sampler ddim for ${choice.steps} steps`,
      );
    }
    return { kind: 'ancestral', steps: T, eta: 1, clip };
  }
  if (choice.kind !== 'ddim') throw new InvalidInputError(`unknown sampler '${String(choice.kind)}'`);
  const steps = choice.steps ?? Math.min(DEFAULT_DDIM_STEPS, T);
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new InvalidInputError(
      `DDIM steps must be a whole number from 1 to ${T} (this run's timesteps), got ${steps}`,
    );
  }
  const eta = choice.eta ?? 0;
  if (!(eta >= 0 && eta <= 1)) throw new InvalidInputError(`DDIM eta must be in [0, 1], got ${eta}`);
  return { kind: 'ddim', steps, eta, clip };
}

/** The sampler object for a choice, over the run's noise schedule. */
export function makeSampler(config: RunConfig, choice: SamplerChoice): Sampler {
  const c = resolveSamplerChoice(config, choice);
  const schedule: NoiseSchedule = noiseScheduleFor(config.diffusion);
  return c.kind === 'ancestral'
    ? new AncestralSampler(schedule, { variance: config.diffusion.variance, clipDenoised: c.clip })
    : new DdimSampler(schedule, { steps: c.steps, eta: c.eta, clipDenoised: c.clip });
}

/** A short name for a resolved choice, used in folder names: `ddpm1000`, `ddim50`, `ddim50-eta0.5-noclip`. */
export function samplerLabel(c: ResolvedSamplerChoice): string {
  const base = c.kind === 'ancestral' ? `ddpm${c.steps}` : `ddim${c.steps}`;
  const eta = c.kind === 'ddim' && c.eta !== 0 ? `-eta${c.eta}` : '';
  return `${base}${eta}${c.clip ? '' : '-noclip'}`;
}
