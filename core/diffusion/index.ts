/** DDPM diffusion math (Ho et al. 2020): schedule, forward process, samplers and the variational bound. */
export { NoiseSchedule, type ScheduleConfig } from './schedule';
export { qSample, epsilonLoss } from './forward';
export { predictX0FromEps, predictEpsFromX0, qPosteriorMean, clipToDataRange } from './posterior';
export { modelLogVariance, type VarianceType } from './variance';
export { standardNormalBatch, noiseStepKey, INITIAL_NOISE_STEP, type NoiseKey } from './noise';
export type { EpsModel, SampleOptions, Sampler } from './sampler';
export { AncestralSampler, type AncestralSamplerOptions } from './ancestral';
export { DdimSampler, uniformDdimTimesteps, type DdimSamplerOptions } from './ddim';
export {
  REPAINT_RESAMPLINGS,
  RePaintSampler,
  repaintSchedule,
  type InpaintRunOptions,
  type RePaintOptions,
} from './repaint';
export { normalKl, approxStandardNormalCdf, discretizedGaussianLogLikelihood } from './gaussian';
export {
  vlbTerms,
  priorBpd,
  fullVlb,
  type VlbTermOptions,
  type FullVlbOptions,
  type VlbEstimate,
} from './vlb';
