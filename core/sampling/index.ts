/** Sampling from a run's weights: sampler choice, image generation, sample sets in the store, grids. */
export {
  DEFAULT_DDIM_STEPS,
  SAMPLER_METHODS,
  makeSampler,
  resolveSamplerChoice,
  samplerLabel,
  type ResolvedSamplerChoice,
  type SamplerChoice,
  type SamplerMethod,
} from './sampler-choice';
export { epsModelFromWeights } from './eps-model';
export {
  DEFAULT_SAMPLE_BATCH,
  generateImages,
  type GenerateOptions,
  type GenerateProgress,
} from './generate';
export { MAX_CHUNKS, planChunks, type ChunkPlan } from './chunks';
export {
  GRID_IMAGES,
  SAMPLE_SET_FORMAT,
  encodeImagePng,
  findChunk,
  finishSampleSet,
  readSampleSet,
  readSampleSetManifest,
  sampleSetKey,
  sampleSetName,
  writeChunk,
  type ChunkRecord,
  type ImageShape,
  type SampleObjects,
  type SampleSetManifest,
  type SampleSetSpec,
} from './sample-set';
export { runSampleChunk, sampleSetLocally, type ChunkRunOptions, type SetProgress } from './run-chunk';
export { runSamplingSeed, sampleGridKey, sampleGridPng } from './grid';
export { checkpointConfig, loadSamplingWeights, type SamplingWeights } from './weights';
